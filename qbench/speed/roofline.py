"""The roofline of decoding: how fast a token could come if each step only had to stream its bytes once."""

from __future__ import annotations

import torch
from torch import nn

from qbench.speed.timing import Timeline

COPY_BYTES = {"cuda": 1 << 30, "cpu": 1 << 26}  # buffer sizes for the copy test: 1 GiB on a GPU, 64 MiB on a CPU
COPY_ITERATIONS = 10


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@torch.inference_mode()
def copy_bandwidth_gbs(device: torch.device) -> float:
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written (as SPEED.md does)."""
    size = COPY_BYTES[device.type]
    source = torch.empty(size, dtype=torch.uint8, device=device).fill_(1)
    target = torch.empty_like(source)
    target.copy_(source)  # warm up
    timeline = Timeline(device)
    timeline.mark("start")
    for _ in range(COPY_ITERATIONS):
        target.copy_(source)
    timeline.mark("copies")
    milliseconds = timeline.durations()["copies"]
    return 2 * size * COPY_ITERATIONS / (milliseconds * 1e-3) / 1e9


def roofline(batch: int, llm_weight_bytes: int, state_bytes: int, bandwidth_gbs: float | None) -> dict[str, float | None]:
    """Bytes read per decode step (every LLM weight once, plus the whole state or KV cache) and the tokens/s
    that the copy bandwidth allows for `batch` sequences."""
    per_step = llm_weight_bytes + state_bytes
    limit = None if bandwidth_gbs is None else batch * bandwidth_gbs * 1e9 / per_step
    return {"bytes_per_token": per_step, "roofline_tokens_per_s": limit}
