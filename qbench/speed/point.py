"""One measured point: a VLM at one batch size under one decode engine, from pixels to the last token.

A batch is served as a server would: its prompts are prefilled a few at a time (at most PREFILL_TOKENS prompt tokens
at once, each group into its rows of one batch-wide state), then decoded together. Each prompt holds `images` images,
each through the tower and projector on its own; the visual tokens come first, then the text. The cost of a prefill
or a decode step depends on the prompt's length, not on where the images sit in it, so one layout times every system
(qbench.prompts says where each system really puts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qbench.backbones.state import copy_state, repeat_rows
from qbench.engine import EagerDecoder, GraphDecoder, make_decoder
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
PREFILL_TOKENS = 16384  # prompt tokens prefilled at once; a batch of more is prefilled a group of prompts at a time


@dataclass(frozen=True)
class Point:
    batch: int
    engine: str
    new_tokens: int
    prompt_tokens: int  # text tokens besides the visual ones
    repeats: int
    images: int = 1  # images per prompt
    # False: only the first group is prefilled and the other rows get copies of its state (every prompt is the same,
    # so is its state): the decode is measured at the whole batch, TTFT and end to end are not
    prefill_all: bool = True

    def prompt_length(self, vlm: VLM) -> int:
        return self.images * vlm.visual_tokens + self.prompt_tokens

    def groups(self, vlm: VLM) -> list[tuple[int, int]]:
        """(first row, prompts) of each group prefilled at once."""
        size = max(1, min(self.batch, PREFILL_TOKENS // self.prompt_length(vlm)))
        return [(start, min(size, self.batch - start)) for start in range(0, self.batch, size)]


def random_inputs(vlm: VLM, prompts: int, point: Point) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels of a noise image through the tower's own preprocessing (untimed, on the CPU), one per image of
    `prompts` prompts, and prompt text ids: timing needs the shapes, not the content."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    side = vlm.spec.vision.resolution
    noise = torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=generator)
    pixels = vlm.preprocess([Image.fromarray(noise.numpy())]).expand(prompts * point.images, -1, -1, -1)
    text = torch.randint(FIRST_TEXT_ID, vlm.spec.backbone.vocab, (prompts, point.prompt_tokens), generator=generator)
    return pixels.to(vlm.device, vlm.vision_dtype), text.to(vlm.device)


@torch.inference_mode()
def batch_state(vlm: VLM, decoder: EagerDecoder) -> int:
    """Give the decoder its batch-wide state (a one-token prefill makes every state tensor; the graph engine then
    captures its step over it); returns the bytes the state took from the device allocator (0 on a CPU)."""
    before = allocated(vlm.device)
    ids = torch.full((decoder.batch, 1), FIRST_TEXT_ID, device=vlm.device)
    decoder.state = vlm.backbone.new_state(decoder.batch, decoder.max_len)
    vlm.backbone.prefill(vlm.backbone.embed(ids), torch.ones_like(ids), decoder.state)
    taken = allocated(vlm.device) - before
    if isinstance(decoder, GraphDecoder):
        decoder.capture_step()
    return taken


@torch.inference_mode()
def timed_pass(vlm: VLM, decoder: EagerDecoder, point: Point, new_tokens: int, groups: int | None = None) -> dict[str, float]:
    """Vision tower, projector and prefill of each group of prompts (summed), first token and the fixed-length
    greedy decode of the whole batch, each timed; `groups` limits the prefill to the first groups (a warm-up), whose
    state the other rows then copy."""
    plan = point.groups(vlm)[: groups if point.prefill_all else 1]
    all_pixels, all_text = random_inputs(vlm, plan[0][1], point)  # the same prompt for every sequence
    timeline = Timeline(vlm.device)
    timeline.mark("start")
    logits = []
    for start, prompts in plan:
        pixels, text = all_pixels[: prompts * point.images], all_text[:prompts]
        features = vlm.vision(pixels)
        timeline.mark("vision")
        visual = vlm.projector(features.to(vlm.dtype)).reshape(prompts, -1, vlm.backbone.hidden_size)
        timeline.mark("projector")
        embeds = torch.cat([visual, vlm.backbone.embed(text)], dim=1)
        group = vlm.backbone.new_state(prompts, decoder.max_len)
        logits.append(vlm.backbone.prefill(embeds, torch.ones(embeds.shape[:2], dtype=torch.long, device=vlm.device),
                                           group))
        copy_state(vlm.backbone, group, decoder.state, start)
        del group
        timeline.mark("prefill")
    token = torch.cat(logits).argmax(-1)
    repeat_rows(vlm.backbone, decoder.state, len(token))
    token = torch.cat([token, token[-1:].expand(decoder.batch - len(token))])
    timeline.mark("copies")
    timeline.mark("first")
    for _ in range(new_tokens - 1):
        token = decoder.step(token).argmax(-1)
    timeline.mark("decode")
    return timeline.durations()


def rates(ms: dict[str, float], point: Point, new_tokens: int) -> dict[str, float | None]:
    """Per-stage times and throughputs; TTFT and end to end only where every prompt was prefilled."""
    ttft = ms["vision"] + ms["projector"] + ms["prefill"] + ms["first"]
    decode = point.batch * (new_tokens - 1) / (ms["decode"] * 1e-3) if new_tokens > 1 else None
    if not point.prefill_all:
        return {"vision_ms": None, "projector_ms": None, "prefill_ms": None, "ttft_ms": None,
                "decode_tokens_per_s": decode, "e2e_tokens_per_s": None}
    return {"vision_ms": ms["vision"], "projector_ms": ms["projector"], "prefill_ms": ms["prefill"], "ttft_ms": ttft,
            "decode_tokens_per_s": decode, "e2e_tokens_per_s": point.batch * new_tokens / ((ttft + ms["decode"]) * 1e-3)}


def warm_decoder(vlm: VLM, point: Point) -> tuple[EagerDecoder, int]:
    """A decoder with its batch state, after the untimed warm-up pass (the first group's prefill and a few steps):
    the point's peak memory is reached here, so an out-of-memory point fails here. Returns it and the state's
    allocated bytes."""
    decoder = make_decoder(point.engine, vlm.backbone, point.batch, point.prompt_length(vlm) + point.new_tokens)
    taken = batch_state(vlm, decoder)
    timed_pass(vlm, decoder, point, min(point.new_tokens, WARMUP_TOKENS), groups=1)
    return decoder, taken


def measure_engine(vlm: VLM, point: Point) -> dict:
    """Timings (medians over `repeats` after one warm-up pass), memory and state size under a qbench engine."""
    reset_peak(vlm.device)
    decoder, taken = warm_decoder(vlm, point)
    runs = []
    for _ in range(point.repeats):
        runs.append(rates(timed_pass(vlm, decoder, point, point.new_tokens), point, point.new_tokens))
    return {**median_of(runs), "peak_mem_gib": peak_gib(vlm.device), "weights_gib": parameter_bytes(vlm) / 2**30,
            "state_bytes": vlm.backbone.state_bytes(decoder.state),
            "state_alloc_gib": taken / 2**30 if vlm.device.type == "cuda" else None,
            "kernel_path": f"{vlm.backbone.kernel_path}; {decoder.kernel_note}"}


@torch.inference_mode()
def measure_reference(vlm: VLM, point: Point) -> dict:
    """The same LLM through mamba_ssm's `generate(cg=True)` over its weight tensors (LLM only: no vision)."""
    model = reference_model(vlm.backbone)
    ids = torch.randint(FIRST_TEXT_ID, vlm.spec.backbone.vocab, (point.batch, point.prompt_length(vlm)),
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
            "state_alloc_gib": None,
            "kernel_path": "mamba_ssm generate(cg=True)"}


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
