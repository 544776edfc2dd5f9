"""How long a sweep takes at the least, before it starts: `qbench speed` on a CPU refuses full-size presets (hours,
and more memory than most machines have) unless --allow-slow, saying how long and how much memory they would take.

The estimate counts the multiply-adds of every timed pass (a warm-up and the repeats of each point): 2 x parameters
x tokens for the tower, the projector and the LLM's prefill and decode, at the matrix-multiply rate measured here.
Real CPU runs are slower (attention, Mamba's sequential scan, Python per decode step), so it is a lower bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from qbench.inputs import resolve_dtype
from qbench.presets import at_visual_tokens, get_preset
from qbench.vlm import build_vlm

FULL_SIZE = 100_000_000  # parameters: a preset above this is full size (the tiny twins have under 1M)
RATE_SIZE = 512  # the square matrices multiplied to measure this machine's rate


@dataclass(frozen=True)
class Estimate:
    full_size: list[str]  # the presets above FULL_SIZE parameters
    seconds: float  # at the least
    memory_gib: float  # the largest model's weights in the sweep's dtype


def matmul_flops_per_s(seconds: float = 0.3) -> float:
    """This machine's fp32 matrix-multiply rate on the CPU, measured for about `seconds`."""
    a, b = torch.randn(RATE_SIZE, RATE_SIZE), torch.randn(RATE_SIZE, RATE_SIZE)
    a @ b  # warm up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        done += 1
    return done * 2 * RATE_SIZE**3 / (time.perf_counter() - started)


def full_size_estimate(config) -> Estimate | None:
    """The least time and memory a sweep (a SweepConfig) with full-size presets needs, from each model's parameter
    counts (built on the meta device) and this machine's rate; None when every preset is small."""
    from qbench.speed.sweep import points_of

    flops, memory, large, built = 0.0, 0.0, [], {}
    for model, tokens, point in points_of(config):
        if (model, tokens) not in built:
            spec = get_preset(model) if tokens is None else at_visual_tokens(get_preset(model), tokens)
            vlm = build_vlm(spec, device="meta", tokenizer=False)
            built[model, tokens] = vlm, vlm.parameter_counts()
        vlm, counts = built[model, tokens]
        if counts["total_params"] > FULL_SIZE and vlm.spec.name not in large:
            large.append(vlm.spec.name)
        memory = max(memory, counts["total_params"] * resolve_dtype(config.dtype).itemsize / 2**30)
        batch = max(point.batch, 1)  # a largest-batch search: at least its first try
        encoded = vlm.vision.num_patches * point.images * batch
        per_pass = 2 * ((counts["vision_params"] + counts["projector_params"]) * encoded
                        + counts["llm_params"] * batch * (point.prompt_length(vlm) + point.new_tokens))
        flops += per_pass * (point.repeats + 1)
    return Estimate(large, flops / matmul_flops_per_s(), memory) if large else None


def duration(seconds: float) -> str:
    """A duration in the unit a person would say it in."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
