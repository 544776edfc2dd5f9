"""Run folders as `qbench run` writes them (summary.json + samples.jsonl), made by tests for the readers."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def sample_rows(task: str, scores: list[float], images: list[str] | None = None,
                question_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One right-or-wrong exact_match row per score; `images`: each question's image key."""
    ids = question_ids or [str(i) for i in range(len(scores))]
    return [{"task": task, "doc_id": i, "question_id": q, "prompt": f"q{i}", "answer": "yes" if s else "no",
             "target": ["yes"], "metric": "exact_match", "score": float(s), "error": None,
             **({"image": images[i]} if images else {})} for i, (q, s) in enumerate(zip(ids, scores))]


def write_rows(folder: Path, rows: list[dict[str, Any]]) -> None:
    (folder / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def write_run(folder: Path, tasks: dict[str, list[float]], rows: list[dict[str, Any]] | None = None,
              **summary: Any) -> Path:
    """A finished run folder: one exact_match task per entry of `tasks` (its scores), or the given rows; `summary`
    fields override the defaults."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows if rows is not None else [row for task, scores in tasks.items() for row in sample_rows(task, scores)]
    metrics = {task: {"exact_match": statistics.fmean(r["score"] for r in rows if r["task"] == task)}
               for task in dict.fromkeys(r["task"] for r in rows)} if rows else {"gqa": {"exact_match": 0.0}}
    doc = {"schema": "qbench.run/1", "model": "tiny-llava", "suite": "mini", "metrics": metrics,
           "n_samples": {task: sum(r["task"] == task for r in rows) for task in metrics},
           "checkpoint": {"source": "random", "sha256": None, "seed": 0}, "device": "cpu", "engine": "answering",
           "limit": None, "started": "2026-12-06T10:00:00+00:00", "finished": "2026-12-06T10:01:00+00:00", **summary}
    (folder / "summary.json").write_text(json.dumps(doc))
    write_rows(folder, rows)
    return folder
