"""Uncertainty of benchmark scores: seeded bootstrap intervals and paired differences, by image.

A task's metric is a statistic of its per-sample rows (samples.jsonl): a mean of the per-sample scores for most
lmms-eval metrics, and for POPE's precision, recall and F1 a statistic of the (prediction, target) pairs, recomputed
on every resample the way lmms-eval's aggregation computes it.

Questions about one image are not independent (VQAv2 asks ~5 per image, GQA ~30, POPE 6 per split): every bootstrap
here resamples whole images, all the questions of an image together (a row's `image` key; rows without one stand
alone). Where no two questions share an image this is the plain bootstrap over questions, resample for resample.
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
    """lmms-eval's `pope_yes_ratio`: the share of 'yes' in the ground truth (not in the model's answers)."""
    truths = [yes_no(row)[1] for row in rows]
    return ratio(truths.count("yes"), truths.count("yes") + truths.count("no"))


def answer_yes_ratio(rows: Sequence[Row]) -> float:
    """The share of questions the model answered 'yes' (a model that always says yes: 1.0)."""
    return ratio(sum(yes_no(row)[0] == "yes" for row in rows), len(rows))


MODEL_YES_RATIO = "pope_answer_yes_ratio"  # qbench's metric beside lmms-eval's pope_yes_ratio (the ground truth's)
STATISTICS: dict[str, Statistic] = {"pope_precision": pope_precision, "pope_recall": pope_recall,
                                    "pope_f1_score": pope_f1, "pope_yes_ratio": pope_yes_ratio,
                                    MODEL_YES_RATIO: answer_yes_ratio}


def statistic_of(metric: str) -> Statistic:
    return STATISTICS.get(metric, mean_score)


def clusters(rows: Sequence[Row]) -> list[np.ndarray]:
    """The rows' indices grouped by the image their question asks about (a row's `image` key), in order of first
    appearance; a row without one is its own group."""
    groups: dict[Any, list[int]] = {}
    for index, row in enumerate(rows):
        image = row.get("image")
        groups.setdefault(("image", image) if image is not None else ("row", index), []).append(index)
    return [np.array(members) for members in groups.values()]


def resamples(n: int, count: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """`count` seeded bootstrap resamples of n indices (one cluster each)."""
    return np.random.default_rng(seed).integers(0, n, size=(count, n))


def interval_of(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """The percentile interval of bootstrap values as order statistics: the k-th smallest and k-th largest value,
    k = ceil(count * (1 - level) / 2). It excludes 0 exactly when `p_value(values)` is below 1 - level, so an
    interval and the p-value beside it never disagree."""
    ordered = np.sort(values)
    k = max(1, math.ceil(len(ordered) * (1 - level) / 2 - 1e-9))
    return [float(ordered[k - 1]), float(ordered[-k])]


def p_value(values: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'no difference': twice the share of resampled differences on the far side
    of 0, at least the bootstrap's resolution 1 / count (below it, the resamples cannot tell: `p_text` says
    "p < 1/count")."""
    tail = min(np.mean(values <= 0), np.mean(values >= 0))
    return float(min(1.0, max(2 * tail, 1 / len(values))))


def p_text(p: float, count: int = RESAMPLES) -> str:
    """"p = 0.031", or "p < 0.0005" at the bootstrap's resolution."""
    return f"p < {1 / count:.2g}" if p <= 1 / count else f"p = {p:.2g}"


def resampled(rows: Sequence[Row], statistic: Statistic, picks: np.ndarray, groups: list[np.ndarray],
              gaps: np.ndarray | None = None, others: Sequence[Row] | None = None) -> np.ndarray:
    """The statistic on each resample of whole clusters (`picks`: cluster indices per resample); with `others`,
    the paired difference statistic(rows) - statistic(others) over the same samples."""
    if statistic is mean_score:  # vectorised over cluster sums and sizes
        values = np.array([row["score"] for row in rows], dtype=float) if gaps is None else gaps
        sums = np.array([values[members].sum() for members in groups])
        sizes = np.array([len(members) for members in groups], dtype=float)
        return sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    found = []
    for pick in picks:
        chosen = np.concatenate([groups[c] for c in pick])
        value = statistic([rows[i] for i in chosen])
        found.append(value - statistic([others[i] for i in chosen]) if others is not None else value)
    return np.array(found)


def bootstrap(rows: Sequence[Row], statistic: Statistic, seed: int = SEED, count: int = RESAMPLES,
              level: float = LEVEL) -> list[float] | None:
    """Bootstrap interval of statistic(rows), resampling whole clusters of questions about one image (`clusters`);
    None without rows. Where no two questions share an image it is the plain bootstrap over questions."""
    if not rows:
        return None
    groups = clusters(rows)
    return interval_of(resampled(rows, statistic, resamples(len(groups), count, seed), groups), level)


def interval(rows: Sequence[Row], metric: str, seed: int = SEED) -> dict[str, Any]:
    """A metric's 95% interval, its number of samples and of images, as summary.json records it."""
    return {"ci": bootstrap(rows, statistic_of(metric), seed), "n": len(rows), "clusters": len(clusters(rows))}


def paired_bootstrap(rows_a: Sequence[Row], rows_b: Sequence[Row], metric: str, seed: int = SEED,
                     count: int = RESAMPLES, level: float = LEVEL) -> dict[str, Any]:
    """Difference A - B over the same samples (row i of A pairs with row i of B, clustered by A's images): its
    interval and two-sided p-value from the same resamples, so the verdict of one is the verdict of the other."""
    statistic = statistic_of(metric)
    groups = clusters(rows_a)
    picks = resamples(len(groups), count, seed)
    gaps = np.array([a["score"] - b["score"] for a, b in zip(rows_a, rows_b)], dtype=float)
    values = resampled(rows_a, statistic, picks, groups, gaps, rows_b)
    return {"difference": statistic(rows_a) - statistic(rows_b), "ci": interval_of(values, level),
            "p": p_value(values), "test": "paired bootstrap" + (" by image" if len(groups) < len(rows_a) else ""),
            "clusters": len(groups)}
