"""The answers of a run as they are made: one JSON line per sample, one file per process, flushed per batch.

An interrupted run resumes from them: answers already there are reused, so every sample is answered (and then
scored) exactly once. A line cut short by the interruption is ignored, and its sample answered again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qbench.folder import naming_full_disk

Key = tuple[str, int]  # (task, doc_id)
PATTERN = "progress-rank*.jsonl"


def key(row: dict[str, Any]) -> Key:
    return row["task"], int(row["doc_id"])


def read_rows(directory: Path) -> dict[Key, dict[str, Any]]:
    """Every complete answer line in the run folder, from any process."""
    rows: dict[Key, dict[str, Any]] = {}
    for path in sorted(directory.glob(PATTERN)):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of an interrupted write
            rows[key(row)] = row
    return rows


class Journal:
    """Answers by (task, doc_id); with a directory, also appended to its progress file (None: in memory only)."""

    def __init__(self, directory: Path | None = None, rank: int = 0):
        self.path = directory / f"progress-rank{rank}.jsonl" if directory is not None else None
        self.rows = read_rows(directory) if directory is not None else {}
        if self.path is not None and self.path.is_file():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                with self.path.open("a") as handle:  # end the line cut short, so the next answer starts anew
                    handle.write("\n")

    def get(self, task: str, doc_id: int) -> dict[str, Any] | None:
        return self.rows.get((task, doc_id))

    def add(self, rows: list[dict[str, Any]]) -> None:
        if self.path is not None:
            with naming_full_disk(self.path), self.path.open("a") as handle:
                handle.write("".join(json.dumps(row) + "\n" for row in rows))
        self.rows.update((key(row), row) for row in rows)


def clear(directory: Path) -> None:
    for path in directory.glob(PATTERN):
        path.unlink()
