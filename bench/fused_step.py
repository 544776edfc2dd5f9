"""qbench's fused Mamba decode step against mamba_ssm's, on one GPU, in one call: correctness, then speed.

    python3 bench/fused_step.py OUT_DIR [cobra,ml-mamba] [1,8,64]     # on the GPU machine, after .gpu/install.sh

Per LLM (bf16, random weights, seed 0): one step from the same prefilled state under the fused step, mamba_ssm's and
transformers' (relative error of logits and new states, against each other and against transformers' step on an fp32
copy), greedy tokens of batch-8 prompts under both steps in bf16 and in fp32 (share identical; transformers' bf16 step
against mamba_ssm's as the noise floor), then decode tokens/s at each
batch for the fused step and mamba_ssm's step, both captured by qbench's graph engine, and for mamba_ssm's
generate(cg=True); per-kernel device times of one graphed step (torch profiler) and the share of the roofline
(copy bandwidth over weight + state bytes per step). Writes OUT_DIR/fused_step.json and prints one JSON line each.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
from pathlib import Path

import torch

from qbench.backbones import Backbone, build_backbone
from qbench.engine import greedy, make_decoder
from qbench.presets import get_preset
from qbench.speed.environment import environment
from qbench.speed.reference import reference_generate, reference_model
from qbench.speed.roofline import copy_bandwidth_gbs, parameter_bytes, roofline
from qbench.speed.timing import Timeline
from qbench.vlm import default_dtype

PROMPT, CHECK_BATCH, CHECK_TOKENS = 576, 8, 64
STEPS, REPEATS, PROFILED_STEPS = 128, 5, 10
PATHS = ("qbench-triton", "mamba_ssm")


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.float() - theirs.float()).norm() / theirs.float().norm())


@torch.inference_mode()
def one_step(backbone: Backbone, reference: Backbone, embeds: torch.Tensor, mask: torch.Tensor) -> dict:
    """The same prefilled state stepped once by each bf16 path and by transformers' step on an fp32 copy of the
    model (from the bf16 state): relative errors of logits, conv and SSM states (last layer, max over layers)."""
    results = {}
    for path in (*PATHS, "transformers", "fp32"):
        model = reference if path == "fp32" else backbone
        model.step_path = "transformers" if path == "fp32" else path
        state = backbone.new_state(embeds.shape[0], PROMPT + 1)
        token = backbone.prefill(embeds, mask, state).argmax(-1)
        if path == "fp32":
            for layer in state.cache.layers:
                layer.conv_states[0] = layer.conv_states[0].float()
                layer.recurrent_states[0] = layer.recurrent_states[0].float()
        results[path] = (model.step(token, state).float(), state.cache.layers)
    row = {}
    for ours, theirs in ((PATHS[0], PATHS[1]), (PATHS[0], "fp32"), (PATHS[1], "fp32"), ("transformers", "fp32")):
        (a, a_layers), (b, b_layers) = results[ours], results[theirs]
        key = f"{ours}_vs_{theirs}"
        row[key] = {"logits_rel_err": relative_error(a, b), "argmax_equal": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
                    "ssm_state_rel_err_layer0": relative_error(a_layers[0].recurrent_states[0], b_layers[0].recurrent_states[0]),
                    "ssm_state_rel_err_max": max(relative_error(x.recurrent_states[0], y.recurrent_states[0])
                                                 for x, y in zip(a_layers, b_layers)),
                    "conv_state_rel_err_max": max(relative_error(x.conv_states[0], y.conv_states[0])
                                                  for x, y in zip(a_layers, b_layers))}
    return row


def same_tokens(backbone: Backbone, embeds: torch.Tensor, mask: torch.Tensor, paths=PATHS) -> dict:
    """Greedy tokens under the graph engine (eager for transformers) with two paths: share of equal tokens, of equal
    sequences, and of equal first tokens."""
    tokens = {}
    for path in paths:
        backbone.step_path = path
        engine = "eager" if path == "transformers" else "graph"
        tokens[path] = greedy(make_decoder(engine, backbone, embeds.shape[0], PROMPT + CHECK_TOKENS), embeds, mask,
                              CHECK_TOKENS)
    equal = tokens[paths[0]] == tokens[paths[1]]
    return {"token_share": float(equal.float().mean()), "sequence_share": float(equal.all(1).float().mean()),
            "second_token_share": float(equal[:, 1].float().mean())}


@torch.inference_mode()
def graph_rate(backbone: Backbone, path: str, batch: int, embeds: torch.Tensor, mask: torch.Tensor) -> tuple:
    """Median decode tokens/s of STEPS graphed steps (REPEATS runs) and the decoder."""
    backbone.step_path = path
    decoder = make_decoder("graph", backbone, batch, PROMPT + STEPS + 1)
    logits = decoder.prefill(embeds, mask)
    token = logits.argmax(-1)
    rates = []
    for _ in range(REPEATS):
        timeline = Timeline(embeds.device)
        timeline.mark("start")
        for _ in range(STEPS):
            decoder.step(token)
        timeline.mark("steps")
        rates.append(batch * STEPS / (timeline.durations()["steps"] * 1e-3))
    return statistics.median(rates), decoder, token


def kernel_times(decoder, token: torch.Tensor) -> dict:
    """Device time per step by kernel name over PROFILED_STEPS graph replays (eager steps where the profiler sees no
    kernels inside a graph): {name: [launches/step, us/step]}."""
    from torch.profiler import ProfilerActivity, profile

    for source, step in (("graph", decoder.step), ("eager", lambda t: decoder.backbone.step(t, decoder.state))):
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(PROFILED_STEPS):
                step(token)
            torch.cuda.synchronize()
        found = kernel_table(prof)
        if found["kernels_per_step"]:
            return {"profiled": source, **found}
    return {"profiled": None, **found}


def kernel_table(prof) -> dict:
    kernels: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type.name != "CUDA" or event.device_time <= 0:
            continue
        entry = kernels.setdefault(event.name[:90], [0, 0.0])
        entry[0] += 1 / PROFILED_STEPS
        entry[1] += event.device_time / PROFILED_STEPS
    ordered = sorted(kernels.items(), key=lambda item: -item[1][1])
    total = sum(us for _, us in kernels.values())
    return {"kernels_per_step": round(sum(n for n, _ in kernels.values()), 1), "kernel_us_per_step": total,
            "top": {name: [round(n, 1), round(us, 1)] for name, (n, us) in ordered[:12]}}


@torch.inference_mode()
def reference_rate(model, ids: torch.Tensor) -> float:
    """mamba_ssm generate(cg=True): decode tokens/s = batch x (STEPS - 1) / (generate - its prefill), median."""
    reference_generate(model, ids, STEPS)
    rates = []
    for _ in range(REPEATS):
        timeline = Timeline(ids.device)
        timeline.mark("start")
        model(ids, num_last_tokens=1)
        timeline.mark("prefill")
        reference_generate(model, ids, STEPS)
        timeline.mark("generate")
        ms = timeline.durations()
        rates.append(ids.shape[0] * (STEPS - 1) / ((ms["generate"] - ms["prefill"]) * 1e-3))
    return statistics.median(rates)


def speed(backbone: Backbone, batch: int, bandwidth: float, weight_bytes: int) -> dict:
    ids = torch.randint(3, backbone.model.config.vocab_size, (batch, PROMPT), device="cuda")
    mask = torch.ones(batch, PROMPT, dtype=torch.long, device="cuda")
    with torch.inference_mode():
        embeds = backbone.embed(ids)
    row = {"batch": batch}
    for path in PATHS:
        rate, decoder, token = graph_rate(backbone, path, batch, embeds, mask)
        limit = roofline(batch, weight_bytes, backbone.state_bytes(decoder.state), bandwidth)
        row[path] = {"tokens_per_s": rate, "roofline_share": rate / limit["roofline_tokens_per_s"],
                     "roofline_tokens_per_s": limit["roofline_tokens_per_s"], "bytes_per_step": limit["bytes_per_token"],
                     "profile": kernel_times(decoder, token)}
        del decoder
        torch.cuda.empty_cache()
    reference = reference_model(backbone)
    row["mamba_ssm generate(cg=True)"] = {"tokens_per_s": reference_rate(reference, ids)}
    del reference
    torch.cuda.empty_cache()
    row["speedup_vs_generate_cg"] = row[PATHS[0]]["tokens_per_s"] / row["mamba_ssm generate(cg=True)"]["tokens_per_s"]
    row["speedup_vs_mamba_ssm_step"] = row[PATHS[0]]["tokens_per_s"] / row[PATHS[1]]["tokens_per_s"]
    return row


def check(name: str, batches: list[int], bandwidth: float) -> dict:
    spec = get_preset(name).backbone
    torch.manual_seed(0)
    with torch.device("cuda"), default_dtype(torch.bfloat16):
        backbone = build_backbone(spec).eval()
    backbone.model.tie_weights()
    weight_bytes = parameter_bytes(backbone.model)
    ids = torch.randint(3, spec.vocab, (CHECK_BATCH, PROMPT), device="cuda")
    mask = torch.ones(CHECK_BATCH, PROMPT, dtype=torch.long, device="cuda")
    with torch.inference_mode():
        embeds = backbone.embed(ids)
    with torch.device("cuda"):
        reference = copy.deepcopy(backbone).float()
    row = {"model": name, "weight_bytes": weight_bytes, "one_step": one_step(backbone, reference, embeds, mask),
           "greedy_bf16": same_tokens(backbone, embeds, mask),
           "greedy_bf16_transformers_vs_mamba_ssm": same_tokens(backbone, embeds, mask, ("transformers", "mamba_ssm")),
           "greedy_fp32": same_tokens(reference, embeds.float(), mask)}
    del reference
    torch.cuda.empty_cache()
    print(name, json.dumps(row), flush=True)
    row["speed"] = []
    for batch in batches:
        row["speed"].append(speed(backbone, batch, bandwidth, weight_bytes))
        print(name, json.dumps(row["speed"][-1]), flush=True)
    return row


def main(out: Path, models: list[str], batches: list[int]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    result = {"command": " ".join(sys.argv), "environment": environment(device), "copy_gbs": copy_bandwidth_gbs(device),
              "prompt_tokens": PROMPT, "steps": STEPS, "repeats": REPEATS, "models": []}
    for model in models:
        result["models"].append(check(model, batches, result["copy_gbs"]))
        (out / "fused_step.json").write_text(json.dumps(result, indent=1))
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main(Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "cobra,ml-mamba").split(","),
         [int(b) for b in (sys.argv[3] if len(sys.argv) > 3 else "1,8,64").split(",")])
