"""Stage timing on the device's own clock: CUDA events on a GPU, the wall clock on the CPU."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch


class Timeline:
    """Marks placed between stages; `durations()` gives the milliseconds from each mark to the next."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.names: list[str] = []
        self.marks: list = []

    def mark(self, name: str) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())
        self.names.append(name)

    def durations(self) -> dict[str, float]:
        """{name of the later mark: ms since the previous mark}, summed over marks of the same name (a stage run
        several times); waits for the device to finish."""
        if self.cuda:
            self.marks[-1].synchronize()
            gaps = [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        else:
            gaps = [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]
        totals: dict[str, float] = {}
        for name, gap in zip(self.names[1:], gaps):
            totals[name] = totals.get(name, 0.0) + gap
        return totals


def median_of(runs: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """Per key, the median over runs (None where a run has no value)."""
    keys = runs[0].keys()
    return {key: None if any(run[key] is None for run in runs) else statistics.median(run[key] for run in runs)
            for key in keys}
