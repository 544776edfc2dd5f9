"""The largest batch that fits: found by trying, not worked out from a formula.

Doubling from one sequence until a batch runs out of memory (or reaches the search's limit), then bisection between
the last batch that fit and the first that did not, until the two are within 1/PRECISION of each other. Each try is
the point's real warm-up pass (batch-wide state, graph capture, the first group's prefill, decode steps), where its
peak memory is reached; a try that runs out of memory is recorded and its memory freed before the next.

Throughput is then measured at that batch. A Mamba state is so small that thousands of long prompts fit, and
prefilling them all would take minutes per pass: beyond MEASURE_TOKENS prompt tokens in the batch, the first group of
prompts is prefilled and the other rows get copies of its state (every prompt is the same, so is its state). The
decode is then measured at the whole batch; TTFT and end-to-end throughput are left empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

LARGEST = "max"  # a batch asked as this is the largest that fits
BATCH_LIMIT = 1 << 16  # the search tries no larger batch
MEASURE_TOKENS = 1 << 19  # a largest batch of more prompt tokens in all is prefilled one group, then copied
PRECISION = 8  # bisection stops once the first batch that failed is within 1/8 of the largest that fit


@dataclass
class Search:
    cap: int  # the largest batch the search would try
    tries: list[dict] = field(default_factory=list)  # {"batch", "status" (ok/oom/error), "error", "peak_mem_gib", ...}
    largest: int = 0  # the largest batch that fit (0: not even one sequence)

    @property
    def capped(self) -> bool:
        """Whether the cap itself fit: at least `largest` sequences fit, maybe more."""
        return self.largest == self.cap

    @property
    def failure(self) -> dict | None:
        """The last try that did not fit."""
        return next((t for t in reversed(self.tries) if t["status"] != "ok"), None)



def largest_batch(attempt: Callable[[int], dict], cap: int) -> Search:
    """Search with `attempt(batch)` -> {"status", "error", "peak_mem_gib"}; an error other than running out of
    memory ends the search."""
    search = Search(cap)

    def fits(batch: int) -> str:
        search.tries.append({"batch": batch, **attempt(batch)})
        return search.tries[-1]["status"]

    batch, failed_at = 1, None
    while failed_at is None:
        status = fits(batch)
        if status != "ok":
            failed_at = batch
            if status == "error":
                return search
        else:
            search.largest = batch
            if batch == cap:
                return search
            batch = min(2 * batch, cap)
    while failed_at - search.largest > max(1, search.largest // PRECISION):
        middle = (search.largest + failed_at) // 2
        status = fits(middle)
        if status == "ok":
            search.largest = middle
        elif status == "oom":
            failed_at = middle
        else:
            break
    return search
