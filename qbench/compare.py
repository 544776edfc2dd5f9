"""Paired comparison of two runs over the same samples: per task the difference, its interval, a p-value, a verdict."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from qbench import stats

PROVENANCE = ("model", "spec", "checkpoint", "variants", "data", "engine", "batch_size", "dtype", "max_new_tokens",
              "versions", "qbench_commit")


class NotComparable(ValueError):
    """Two runs that cannot be paired (different tasks or samples, or a folder that is not a finished run)."""


def load_run(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    folder = Path(folder)
    if not (folder / "summary.json").is_file() or not (folder / "samples.jsonl").is_file():
        raise NotComparable(f"{folder} is not a finished run (no summary.json and samples.jsonl)")
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip()]
    return json.loads((folder / "summary.json").read_text()), rows


def key(row: dict[str, Any]) -> tuple[str, str]:
    """A sample's identity: its task and question id (its doc id where the dataset has none)."""
    return row["task"], row["question_id"] if row["question_id"] is not None else f"doc{row['doc_id']}"


def paired_rows(rows_a: list[dict], rows_b: list[dict]) -> dict[str, tuple[list[dict], list[dict]]]:
    """Per task the two runs' rows in the same sample order; refuses runs over different samples."""
    by_a, by_b = {key(r): r for r in rows_a}, {key(r): r for r in rows_b}
    if by_a.keys() != by_b.keys():
        only_a, only_b = len(by_a.keys() - by_b.keys()), len(by_b.keys() - by_a.keys())
        raise NotComparable(f"the runs are over different samples ({only_a} only in A, {only_b} only in B); "
                            "compare runs of the same suite, limit and data")
    tasks: dict[str, tuple[list[dict], list[dict]]] = {}
    for sample in sorted(by_a):
        pair = tasks.setdefault(sample[0], ([], []))
        pair[0].append(by_a[sample])
        pair[1].append(by_b[sample])
    return tasks


def provenance_differences(summary_a: dict[str, Any], summary_b: dict[str, Any]) -> list[str]:
    """The provenance fields in which the two runs differ."""
    return [field for field in PROVENANCE if summary_a.get(field) != summary_b.get(field)]


def verdict(difference: float, ci: list[float], n: int) -> str:
    if ci[0] > 0:
        return "A > B"
    if ci[1] < 0:
        return "A < B"
    return f"no detectable difference at n={n}"


def compare_task(rows_a: list[dict], rows_b: list[dict], metric: str) -> dict[str, Any]:
    """The difference A - B of one task's metric, its paired bootstrap interval and p-value (exact McNemar for
    right-or-wrong scores of a mean metric)."""
    found = stats.paired_bootstrap(rows_a, rows_b, metric)
    if stats.statistic_of(metric) is stats.mean_score and stats.is_binary(rows_a) and stats.is_binary(rows_b):
        a_only = sum(a["score"] > b["score"] for a, b in zip(rows_a, rows_b))
        b_only = sum(b["score"] > a["score"] for a, b in zip(rows_a, rows_b))
        found |= {"p": stats.mcnemar_exact(a_only, b_only), "test": "exact McNemar"}
    return {"metric": metric, "n": len(rows_a), **found, "verdict": verdict(found["difference"], found["ci"],
                                                                           len(rows_a))}


def compare_runs(folder_a: str | Path, folder_b: str | Path, disagreements: str | Path | None = None
                 ) -> dict[str, Any]:
    """Per task comparison of run A with run B; the samples on which their scores differ go to `disagreements` (csv)."""
    summary_a, rows_a = load_run(folder_a)
    summary_b, rows_b = load_run(folder_b)
    tasks = paired_rows(rows_a, rows_b)
    result = {"a": str(folder_a), "b": str(folder_b), "provenance_differs": provenance_differences(summary_a, summary_b),
              "tasks": {task: compare_task(a, b, a[0]["metric"]) for task, (a, b) in tasks.items()}}
    if disagreements is not None:
        write_disagreements(Path(disagreements), tasks)
    return result


def write_disagreements(path: Path, tasks: dict[str, tuple[list[dict], list[dict]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", "question_id", "doc_id", "prompt", "target", "answer_a", "score_a", "answer_b",
                         "score_b"])
        for task, (rows_a, rows_b) in tasks.items():
            for a, b in zip(rows_a, rows_b):
                if a["score"] != b["score"] or a["answer"] != b["answer"]:
                    writer.writerow([task, a["question_id"], a["doc_id"], a["prompt"], " | ".join(map(str, a["target"])),
                                     a["answer"], a["score"], b["answer"], b["score"]])
