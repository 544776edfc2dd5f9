"""Uncertainty of benchmark scores: seeded bootstrap intervals over samples, paired differences, exact McNemar.

A task's metric is a statistic of its per-sample rows (samples.jsonl): a mean of the per-sample scores for most
lmms-eval metrics, and for POPE's precision, recall and F1 a statistic of the (prediction, target) pairs, recomputed
on every resample the way lmms-eval's aggregation computes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Row = dict[str, Any]
Statistic = Callable[[Sequence[Row]], float]

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0


def mean_score(rows: Sequence[Row]) -> float:
    return float(np.mean([row["score"] for row in rows])) if rows else math.nan


def yes_no(row: Row) -> tuple[str, str]:
    """POPE's (prediction, ground truth), normalised as lmms-eval's pope_process_results does."""
    target = row["target"][0] if row["target"] else ""
    return (row["answer"] or "").lower().strip(), str(target).lower().strip()


def pope_counts(rows: Sequence[Row]) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of the 'yes' answers."""
    pairs = [yes_no(row) for row in rows]
    tp = sum(p == "yes" and g == "yes" for p, g in pairs)
    fp = sum(p == "yes" and g == "no" for p, g in pairs)
    fn = sum(p == "no" and g == "yes" for p, g in pairs)
    return tp, fp, fn


def ratio(top: int, bottom: int) -> float:
    return top / bottom if bottom else 0.0


def pope_precision(rows: Sequence[Row]) -> float:
    tp, fp, _ = pope_counts(rows)
    return ratio(tp, tp + fp)


def pope_recall(rows: Sequence[Row]) -> float:
    tp, _, fn = pope_counts(rows)
    return ratio(tp, tp + fn)


def pope_f1(rows: Sequence[Row]) -> float:
    precision, recall = pope_precision(rows), pope_recall(rows)
    return ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0


def pope_yes_ratio(rows: Sequence[Row]) -> float:
    truths = [yes_no(row)[1] for row in rows]
    return ratio(truths.count("yes"), truths.count("yes") + truths.count("no"))


STATISTICS: dict[str, Statistic] = {"pope_precision": pope_precision, "pope_recall": pope_recall,
                                    "pope_f1_score": pope_f1, "pope_yes_ratio": pope_yes_ratio}


def statistic_of(metric: str) -> Statistic:
    return STATISTICS.get(metric, mean_score)


def resamples(n: int, count: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """`count` seeded bootstrap resamples of n indices (one row each)."""
    return np.random.default_rng(seed).integers(0, n, size=(count, n))


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def bootstrap(rows: Sequence[Row], statistic: Statistic, seed: int = SEED, count: int = RESAMPLES,
              level: float = LEVEL) -> list[float] | None:
    """Percentile bootstrap interval of statistic(rows); None without rows."""
    if not rows:
        return None
    if statistic is mean_score:  # vectorised: the same resamples, the same interval
        scores = np.array([row["score"] for row in rows], dtype=float)
        return percentile_interval(scores[resamples(len(rows), count, seed)].mean(axis=1), level)
    values = np.array([statistic([rows[i] for i in picks]) for picks in resamples(len(rows), count, seed)])
    return percentile_interval(values, level)


def interval(rows: Sequence[Row], metric: str, seed: int = SEED) -> dict[str, Any]:
    """A metric's 95% interval and its number of samples, as summary.json records it."""
    return {"ci": bootstrap(rows, statistic_of(metric), seed), "n": len(rows)}


def paired_bootstrap(rows_a: Sequence[Row], rows_b: Sequence[Row], metric: str, seed: int = SEED,
                     count: int = RESAMPLES, level: float = LEVEL) -> dict[str, Any]:
    """Difference A - B over the same samples (row i of A pairs with row i of B): interval and two-sided p-value."""
    statistic = statistic_of(metric)
    difference = statistic(rows_a) - statistic(rows_b)
    picks = resamples(len(rows_a), count, seed)
    if statistic is mean_score:  # vectorised: the same resamples, the same values
        gaps = np.array([a["score"] - b["score"] for a, b in zip(rows_a, rows_b)], dtype=float)
        values = gaps[picks].mean(axis=1)
    else:
        values = np.array([statistic([rows_a[i] for i in p]) - statistic([rows_b[i] for i in p]) for p in picks])
    tail = min(np.mean(values <= 0), np.mean(values >= 0))
    return {"difference": difference, "ci": percentile_interval(values, level),
            "p": float(min(1.0, 2 * tail)), "test": "paired bootstrap"}


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (right only in A, right only in B)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def is_binary(rows: Sequence[Row]) -> bool:
    return all(row["score"] in (0.0, 1.0) for row in rows)
