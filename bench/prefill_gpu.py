"""qbench's own Mamba layers on one GPU: the same answers as transformers' layers, and prefill and vision at the
hardware's speed.

    source bench/gpu_setup.sh && python3 bench/prefill_gpu.py OUT_DIR [cobra,ml-mamba] [layers2,layers,prefill,vision]

Per LLM (random weights, seed 0), first correctness: in bf16 and fp32, the logits of a left-padded batch's prefill
and of a question chunk continued from a prefix state (qbench's layers on mamba_ssm's kernels) against transformers'
layers over the same weights (max absolute difference, relative to the logits' scale, and the share of identical
argmax tokens), for the LLM at its own widths with 2 layers (the kernels' own error; a random 64-layer stack
amplifies last-bit differences, README "Answers must not depend on the batch") and with all its layers. Then speed: 16 prompts of 745 tokens (729 visual + 16 text, Cobra's prompt at 384 px) prefilled in
bf16 by qbench's layers, by mamba_ssm's own model over the same weights and by transformers' layers, each a median of
REPEATS after a warm-up: prompt tokens/s, model TFLOP/s (2 per weight per token) and MFU against the card's dense
bf16 peak, and the GPU kernels one qbench prefill spends its time in (torch profiler). Last, the system's vision tower (DINOv2 + SigLIP at 384 px) at batch 16, 32 and 64: images/s and MFU.
Writes OUT_DIR/prefill.json (environment included) and prints each row as it comes.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from qbench.backbones import build_backbone
from qbench.backbones.kernels import installed
from qbench.backbones.state import load_rows
from qbench.presets import get_preset
from qbench.speed.environment import environment
from qbench.speed.flops import image_flops, peak_flops, token_flops
from qbench.speed.reference import reference_model
from qbench.vlm import build_vlm, default_dtype

PROMPTS, PROMPT_TOKENS, REPEATS = 16, 745, 5
VISION_BATCHES = (16, 32, 64)


def seconds(work, repeats: int = REPEATS) -> float:
    """Median seconds of `work()` after one warm-up call, synchronised."""
    work()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        work()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def difference(ours: torch.Tensor, theirs: torch.Tensor) -> dict:
    ours, theirs = ours.float(), theirs.float()
    return {"max_abs": float((ours - theirs).abs().max()), "scale": float(theirs.abs().max()),
            "same_argmax": float((ours.argmax(-1) == theirs.argmax(-1)).float().mean())}


@torch.inference_mode()
def correctness(name: str, dtype: torch.dtype, layers: int | None) -> dict:
    spec = get_preset(name).backbone
    with torch.device("cuda"), default_dtype(dtype):
        torch.manual_seed(0)
        backbone = build_backbone(dataclasses.replace(spec, layers=layers or spec.layers)).eval()
    theirs = backbone.reference()
    generator = torch.Generator(device="cuda").manual_seed(1)
    ids = torch.randint(3, 50000, (8, 300), device="cuda", generator=generator)
    mask = torch.ones_like(ids)
    mask[1::2, :100] = 0
    expected = theirs(input_ids=ids, attention_mask=mask).logits[:, -1]
    prefill = backbone.prefill(backbone.embed(ids), mask, backbone.new_state(8, 400))
    prefix, questions = ids[:1, :280], ids[:, 280:]
    qmask = torch.ones_like(questions)
    qmask[::2, :6] = 0
    bank = backbone.new_state(1, 400)
    backbone.prefill(backbone.embed(prefix), torch.ones_like(prefix), bank)
    state = backbone.new_state(8, 400)
    load_rows(backbone, bank, torch.zeros(8, dtype=torch.long, device="cuda"), state)
    extended = backbone.extend(questions, qmask, state)
    whole = torch.stack([theirs(input_ids=torch.cat([prefix[0], questions[r][qmask[r].bool()]])[None]).logits[0, -1]
                         for r in range(8)])
    row = {"check": "layers_vs_transformers", "model": name, "layers": layers or spec.layers,
           "dtype": str(dtype).removeprefix("torch."),
           "prefill": difference(prefill, expected), "question_from_prefix": difference(extended, whole)}
    return row


@torch.inference_mode()
def prefill_speed(name: str, peak: float | None) -> list[dict]:
    with torch.device("cuda"), default_dtype(torch.bfloat16):
        torch.manual_seed(0)
        backbone = build_backbone(get_preset(name).backbone).eval()
    ids = torch.randint(3, 50000, (PROMPTS, PROMPT_TOKENS), device="cuda")
    embeds, mask = backbone.embed(ids), torch.ones_like(ids)
    flops = token_flops(backbone) * ids.numel()
    ways = {"qbench layers": lambda: backbone.prefill(embeds, mask, backbone.new_state(PROMPTS, PROMPT_TOKENS + 1)),
            "transformers layers": lambda: backbone.reference()(input_ids=ids, attention_mask=mask, logits_to_keep=1)}
    if backbone.mamba_ssm_mixer and installed("mamba_ssm"):
        model = reference_model(backbone)
        ways["mamba_ssm model"] = lambda: model(ids, num_last_tokens=1)
    rows = []
    for way, work in ways.items():
        row = {"check": "prefill_speed", "model": name, "way": way, "prompts": PROMPTS, "prompt_tokens": PROMPT_TOKENS,
               "kernel_path": backbone.kernel_path if way == "qbench layers" else None}
        try:
            taken = seconds(work, repeats=REPEATS if way != "transformers layers" else 1)
        except (RuntimeError, TypeError, ImportError) as error:  # mamba_ssm's Mamba-2 model needs causal-conv1d
            rows.append(row | {"error": f"{type(error).__name__}: {str(error)[:200]}"})
        else:
            rows.append(row | {"seconds": taken, "tokens_per_s": ids.numel() / taken, "tflops": flops / taken / 1e12,
                               "mfu": flops / taken / peak if peak else None})
        print(json.dumps(rows[-1]), flush=True)
    rows.append({"check": "prefill_kernels", "model": name, "top": kernel_times(ways["qbench layers"])})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def kernel_times(work, top: int = 15) -> list[dict]:
    """The GPU kernels one call of `work` spends its time in: name, milliseconds, share, most first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as profiled:
        work()
        torch.cuda.synchronize()
    totals: dict[str, float] = defaultdict(float)
    for event in profiled.events():
        if event.device_type.name == "CUDA":
            totals[event.name[:90]] += event.device_time_total / 1e3
    whole = sum(totals.values()) or 1.0
    return [{"kernel": name, "ms": ms, "share": ms / whole}
            for name, ms in sorted(totals.items(), key=lambda item: -item[1])[:top]]


@torch.inference_mode()
def vision_speed(name: str, peak: float | None) -> list[dict]:
    vlm = build_vlm(get_preset(name), device="cuda", dtype=torch.bfloat16, tokenizer=False).eval()
    side = vlm.spec.vision.resolution
    rows = []
    for batch in VISION_BATCHES:
        pixels = torch.randn(batch, 3 * len(vlm.vision.encoders), side, side, device="cuda", dtype=torch.bfloat16)
        taken = seconds(lambda pixels=pixels: vlm.encode_images(pixels))
        flops = batch * image_flops(vlm)
        rows.append({"check": "vision_speed", "model": name, "batch": batch, "seconds": taken,
                     "images_per_s": batch / taken, "tflops": flops / taken / 1e12,
                     "mfu": flops / taken / peak if peak else None})
        print(json.dumps(rows[-1]), flush=True)
    return rows


PARTS = ("layers2", "layers", "prefill", "vision")  # correctness at 2 layers, at all layers; prefill speed; vision


def main(out: Path, models: list[str], parts: list[str]) -> None:
    env = environment(torch.device("cuda"))
    peak = peak_flops(env["gpu"], "bf16")
    rows = []
    document = {"command": " ".join(["python3", "bench/prefill_gpu.py", *sys.argv[1:]]), "environment": env,
                "peak_bf16_tflops": peak and peak / 1e12, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    work = [lambda m=m, d=d, n=n: [correctness(m, d, n)] for m in models
            for n in [layers for part, layers in (("layers2", 2), ("layers", None)) if part in parts]
            for d in (torch.bfloat16, torch.float32)]
    work += [lambda m=m: prefill_speed(m, peak) for m in models if "prefill" in parts]
    work += [lambda: vision_speed(models[0], peak)] if "vision" in parts else []
    for part in work:
        found = part()
        rows.extend(found)
        for row in found:
            if row["check"] == "layers_vs_transformers":
                print(json.dumps(row), flush=True)
        (out / "prefill.json").write_text(json.dumps(document, indent=2) + "\n")  # after each part: a cut run keeps
        torch.cuda.empty_cache()  # the part's model is gone


if __name__ == "__main__":
    main(Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "cobra,ml-mamba").split(","),
         (sys.argv[3] if len(sys.argv) > 3 else ",".join(PARTS)).split(","))
