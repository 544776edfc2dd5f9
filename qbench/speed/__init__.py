"""`qbench speed`: time and memory of every stage, under the same decode engine for every backbone."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from qbench.speed.largest_batch import LARGEST
from qbench.speed.results import ROW_FIELDS, SCHEMA, SpeedResults
from qbench.speed.sweep import SweepConfig, default_engines, run_sweep

SUMMARY = {"model": "model", "visual_tokens": "tokens", "images": "images", "batch": "batch", "engine": "engine", "status": "status",
           "ttft_ms": "TTFT ms", "decode_tokens_per_s": "decode tok/s", "e2e_tokens_per_s": "e2e tok/s",
           "roofline_share": "of roofline", "peak_mem_gib": "peak GiB"}


@contextlib.contextmanager
def track(config: SweepConfig, console: Console) -> Iterator[Callable[[dict], None]]:
    """A rich progress bar over the sweep's points; yields the callback that advances it per row."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("speed", total=config.points())

        def on_row(row: dict) -> None:
            point = f"{row['model']} {row['visual_tokens']} tok b{row['batch']} {row['engine']}: {row['status']}"
            progress.advance(task)
            progress.update(task, description=point)
            rate = row.get("decode_tokens_per_s")
            progress.console.log(point + (f", decode {rate:.1f} tok/s" if rate else ""), highlight=False)

        yield on_row


def log_try(console: Console) -> Callable[[dict], None]:
    """A console line for each batch a largest-batch search tries."""

    def on_try(attempt: dict) -> None:
        console.log(f"{attempt['model']} {attempt['visual_tokens']} tok: batch {attempt['batch']} "
                    f"{'fits' if attempt['status'] == 'ok' else attempt['status']} ({attempt['seconds']:.1f} s)",
                    highlight=False)

    return on_try


def summary_table(rows: list[dict]) -> Table:
    table = Table(title="qbench speed")
    for title in SUMMARY.values():
        table.add_column(title, justify="left" if title in ("model", "engine", "status") else "right")
    for row in rows:
        table.add_row(*(cell(row[key], key) for key in SUMMARY))
    return table


def cell(value: object, key: str) -> str:
    if value is None:
        return "-"
    if key == "roofline_share":
        return f"{value:.0%}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


__all__ = ["LARGEST", "ROW_FIELDS", "SCHEMA", "SpeedResults", "SweepConfig", "default_engines", "log_try",
           "run_sweep", "summary_table", "track"]
