"""Run folders as `qbench run` writes them, read and checked in one place: summary.json and samples.jsonl.

Every reader of run folders (`qbench compare`, `qbench report`, the ablation lab) goes through `read_run`. It
refuses, with one BadRun naming the file (and the line) and what is wrong: a summary of an unknown schema or
without its model, suite and metrics; a metric or interval that is not a finite number; a samples.jsonl line that
is not a JSON object, lacks a known column, or scores with anything but a finite number; two rows of one sample
(task and question id, or doc id where the dataset has no question id); no rows at all.

Rows from before the `metric` column take their task's first metric from the summary: a row's score has always
been lmms-eval's score by the task's first metric, which is the first the summary lists. Rows from before the
`image` column (the image a question asks about) have none: each is its own cluster in the bootstrap.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbench.inputs import UnreadableFile

SCHEMAS = ("qbench.run/1",)  # the summary schemas this reader knows
SUMMARY, SAMPLES = "summary.json", "samples.jsonl"
COLUMNS = ("task", "doc_id", "question_id", "prompt", "answer", "target", "score", "error")  # in every row
Row = dict[str, Any]


class BadRun(UnreadableFile):
    """A run folder that is not a finished, readable run; the message names the file and what is wrong."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path} {problem}: it is not a complete run written by `qbench run`; run it again, or "
                         "leave this folder out")
        self.path, self.problem = path, problem


bad = BadRun


@dataclass(frozen=True)
class Run:
    folder: Path
    summary: dict[str, Any]
    rows: list[Row]  # in sample order: task, then question id

    def tasks(self) -> dict[str, list[Row]]:
        """Each task's rows, in sample order."""
        found: dict[str, list[Row]] = {}
        for row in self.rows:
            found.setdefault(row["task"], []).append(row)
        return found


def sample_key(row: Row) -> tuple[str, str]:
    """A sample's identity: its task and question id (its doc id where the dataset has none)."""
    return row["task"], row["question_id"] if row["question_id"] is not None else f"doc{row['doc_id']}"


def finite(value: Any) -> bool:
    """A JSON number that is a finite float (not a bool, not too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def load_json(path: Path) -> Any:
    """One JSON document; BadRun naming the file when it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise bad(path, "is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:  # ValueError: not JSON, or a number too long
        raise bad(path, f"cannot be read as JSON ({error})") from None


def check_metrics(path: Path, summary: dict[str, Any]) -> None:
    metrics = summary.get("metrics")
    if not isinstance(metrics, dict) or not metrics or not all(isinstance(m, dict) for m in metrics.values()):
        raise bad(path, "has no 'metrics' of the form {task: {metric: value}}")
    for task, values in metrics.items():
        for metric, value in values.items():
            if not finite(value) and not (metric.partition(",")[0].endswith("_stderr") and isinstance(value, str)):
                raise bad(path, f"has metrics.{task}.{metric} = {short(value)}, not a finite number")
    for task, values in (summary.get("intervals") or {}).items():
        for metric, found in (values or {}).items():
            ci = (found or {}).get("ci")
            if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(map(finite, ci))):
                raise bad(path, f"has intervals.{task}.{metric}.ci = {short(ci)}, not two finite numbers")


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def read_summary(folder: Path) -> dict[str, Any]:
    """A run's summary.json, checked: a known schema, the model, suite and finite metrics."""
    path = folder / SUMMARY
    summary = load_json(path)
    if not isinstance(summary, dict):
        raise bad(path, "is not a JSON object")
    if summary.get("schema") not in SCHEMAS:
        raise bad(path, f"has schema {short(summary.get('schema'))}; this qbench reads {', '.join(SCHEMAS)}")
    for field in ("model", "suite"):
        if not isinstance(summary.get(field), str) or not summary[field]:
            raise bad(path, f"has no {field!r}")
    check_metrics(path, summary)
    return summary


def checked_row(path: Path, line: int, row: Any, summary: dict[str, Any]) -> Row:
    """One samples.jsonl row with its columns checked and typed: question_id a string or None, target a list,
    score a float, metric (the summary's first for its task where the row predates the column), image or None."""
    where = f"line {line}"
    if not isinstance(row, dict):
        raise bad(path, f"{where} is not a JSON object")
    missing = [column for column in COLUMNS if column not in row]
    if missing:
        raise bad(path, f"{where} has no {', '.join(map(repr, missing))}")
    if not isinstance(row["task"], str) or isinstance(row["doc_id"], bool) or not isinstance(row["doc_id"], int):
        raise bad(path, f"{where} has task {short(row['task'])} and doc_id {short(row['doc_id'])}: a name and a "
                        "whole number are needed")
    if not finite(row["score"]):
        raise bad(path, f"{where} has score {short(row['score'])}, not a finite number")
    metric = row.get("metric")
    if metric is None:
        metric = next(iter(summary["metrics"].get(row["task"], {})), None)
        if metric is None:
            raise bad(path, f"{where} is of task {row['task']!r}, which the summary has no metric of")
    target, question = row["target"], row["question_id"]
    return {**row, "question_id": None if question is None else str(question),
            "target": target if isinstance(target, list) else [] if target is None else [target],
            "answer": "" if row["answer"] is None else str(row["answer"]), "score": float(row["score"]),
            "metric": str(metric).partition(",")[0], "image": row.get("image")}


def read_samples(folder: Path, summary: dict[str, Any]) -> list[Row]:
    """A run's samples.jsonl, every row checked, in sample order; BadRun on the first problem."""
    path = folder / SAMPLES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise bad(path, "is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise bad(path, f"cannot be read ({error})") from None
    rows: dict[tuple[str, str], Row] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError as error:  # not JSON (a line cut short), or a number too long to read
            raise bad(path, f"line {number} is not JSON ({error})") from None
        row = checked_row(path, number, parsed, summary)
        key = sample_key(row)
        if key in rows:
            raise bad(path, f"line {number} repeats the sample {key[0]} {key[1]} (each sample is scored once)")
        rows[key] = row
    if not rows:
        raise bad(path, "holds no samples")
    return [rows[key] for key in sorted(rows)]


def read_run(folder: str | Path, samples: bool = True) -> Run:
    """A finished run folder, checked (see the module's docstring); `samples=False`: the summary alone (rows
    empty), for a run from before samples.jsonl existed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadRun(folder, f"is not a folder (a run folder holds {SUMMARY} and {SAMPLES})")
    summary = read_summary(folder)
    return Run(folder, summary, read_samples(folder, summary) if samples else [])
