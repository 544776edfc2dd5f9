"""One measured point: a VLM at one batch size under one decode engine, from pixels to the last token."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qbench.engine import EagerDecoder, make_decoder
from qbench.speed.reference import (
    reference_generate,
    reference_model,
    reference_state_bytes,
)
from qbench.speed.roofline import parameter_bytes
from qbench.speed.timing import Timeline, median_of
from qbench.vlm import VLM

WARMUP_TOKENS = 8  # the untimed first pass: captures graphs, tunes kernels, allocates
FIRST_TEXT_ID = 3  # random prompt ids start above the special tokens


@dataclass(frozen=True)
class Point:
    batch: int
    engine: str
    new_tokens: int
    prompt_tokens: int  # text tokens besides the visual ones
    repeats: int


def random_inputs(vlm: VLM, point: Point) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels of a noise image through the tower's own preprocessing (untimed, on the CPU) and prompt text ids:
    timing needs the shapes, not the content."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    side = vlm.spec.vision.resolution
    noise = torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=generator)
    pixels = vlm.preprocess([Image.fromarray(noise.numpy())]).expand(point.batch, -1, -1, -1)
    text = torch.randint(FIRST_TEXT_ID, vlm.spec.backbone.vocab, (point.batch, point.prompt_tokens), generator=generator)
    return pixels.to(vlm.device, vlm.vision_dtype), text.to(vlm.device)


def prompt_length(vlm: VLM, point: Point) -> int:
    return vlm.visual_tokens + point.prompt_tokens


@torch.inference_mode()
def timed_pass(vlm: VLM, decoder: EagerDecoder, pixels: torch.Tensor, text: torch.Tensor,
               new_tokens: int) -> dict[str, float]:
    """Vision tower, projector, prefill, first token and the fixed-length greedy decode, each timed."""
    timeline = Timeline(vlm.device)
    timeline.mark("start")
    features = vlm.vision(pixels)
    timeline.mark("vision")
    visual = vlm.projector(features.to(vlm.dtype))
    timeline.mark("projector")
    embeds = torch.cat([visual, vlm.backbone.embed(text)], dim=1)
    mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    logits = decoder.prefill(embeds, mask)
    timeline.mark("prefill")
    token = logits.argmax(-1)
    timeline.mark("first")
    for _ in range(new_tokens - 1):
        token = decoder.step(token).argmax(-1)
    timeline.mark("decode")
    return timeline.durations()


def rates(ms: dict[str, float], batch: int, new_tokens: int) -> dict[str, float | None]:
    ttft = ms["vision"] + ms["projector"] + ms["prefill"] + ms["first"]
    return {"vision_ms": ms["vision"], "projector_ms": ms["projector"], "prefill_ms": ms["prefill"], "ttft_ms": ttft,
            "decode_tokens_per_s": batch * (new_tokens - 1) / (ms["decode"] * 1e-3) if new_tokens > 1 else None,
            "e2e_tokens_per_s": batch * new_tokens / ((ttft + ms["decode"]) * 1e-3)}


def measure_engine(vlm: VLM, point: Point) -> dict:
    """Timings (medians over `repeats` after one warm-up pass), memory and state size under a qbench engine."""
    pixels, text = random_inputs(vlm, point)
    decoder = make_decoder(point.engine, vlm.backbone, point.batch, prompt_length(vlm, point) + point.new_tokens)
    timed_pass(vlm, decoder, pixels, text, min(point.new_tokens, WARMUP_TOKENS))
    runs = []
    for _ in range(point.repeats):
        reset_peak(vlm.device)
        runs.append(rates(timed_pass(vlm, decoder, pixels, text, point.new_tokens), point.batch, point.new_tokens))
    return {**median_of(runs), "peak_mem_gib": peak_gib(vlm.device), "weights_gib": parameter_bytes(vlm) / 2**30,
            "state_bytes": vlm.backbone.state_bytes(decoder.state),
            "kernel_path": f"{vlm.backbone.kernel_path}; {decoder.kernel_note}"}


@torch.inference_mode()
def measure_reference(vlm: VLM, point: Point) -> dict:
    """The same LLM through mamba_ssm's `generate(cg=True)` over its weight tensors (LLM only: no vision)."""
    model = reference_model(vlm.backbone)
    ids = torch.randint(FIRST_TEXT_ID, vlm.spec.backbone.vocab, (point.batch, prompt_length(vlm, point)),
                        device=vlm.device)
    reference_generate(model, ids, point.new_tokens)  # captures its graph
    runs = []
    for _ in range(point.repeats):
        reset_peak(vlm.device)
        timeline = Timeline(vlm.device)
        timeline.mark("start")
        model(ids, num_last_tokens=1)
        timeline.mark("prefill")
        reference_generate(model, ids, point.new_tokens)
        timeline.mark("generate")
        ms = timeline.durations()
        decode_s = (ms["generate"] - ms["prefill"]) * 1e-3  # generate = its own prefill, then the decode steps
        runs.append({"prefill_ms": ms["prefill"], "ttft_ms": ms["prefill"],
                     "decode_tokens_per_s": point.batch * (point.new_tokens - 1) / decode_s,
                     "e2e_tokens_per_s": point.batch * point.new_tokens / (ms["generate"] * 1e-3)})
    return {**median_of(runs), "vision_ms": None, "projector_ms": None, "peak_mem_gib": peak_gib(vlm.device),
            "weights_gib": parameter_bytes(model) / 2**30, "state_bytes": reference_state_bytes(model),
            "kernel_path": "mamba_ssm generate(cg=True)"}


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
