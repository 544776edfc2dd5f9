"""Side by side on one GPU, LLM only (no vision): each full-size LLM under qbench's eager and graph engines and,
for the Mamba LLMs, mamba_ssm's own generate(cg=True) on the same weights; prints one JSON line per LLM.

    python3 bench/engine_check.py cobra,ml-mamba,llava     # on the GPU machine, after .gpu/install.sh

Tokens/s here = 256 / (prefill + 255 decode steps) of a 729-token prompt at batch 1, bf16, random weights.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import torch

from qbench.backbones import Backbone, build_backbone
from qbench.engine import greedy, make_decoder
from qbench.presets import get_preset
from qbench.speed.reference import reference_generate, reference_model
from qbench.vlm import default_dtype

PROMPT, NEW_TOKENS, EAGER_TOKENS = 729, 256, 64


def timed(work: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = work()
    torch.cuda.synchronize()
    return out, time.perf_counter() - start


@torch.inference_mode()
def fused_vs_transformers_step(backbone: Backbone, embeds: torch.Tensor, mask: torch.Tensor) -> dict:
    """One decode step from the same prefilled state: mamba_ssm's fused step against transformers' own."""
    ours, theirs = backbone.new_state(1, PROMPT + 1), backbone.new_state(1, PROMPT + 1)
    token = backbone.prefill(embeds, mask, ours).argmax(-1)
    backbone.prefill(embeds, mask, theirs)
    fused = backbone.step(token, ours).float()
    plain = backbone.reference()(input_ids=token[:, None], cache_params=theirs.cache, use_cache=True).logits[:, -1]
    plain = plain.float()
    return {"fused_vs_hf_maxdiff": float((fused - plain).abs().max()), "logit_scale": float(plain.abs().max()),
            "fused_vs_hf_argmax_eq": bool((fused.argmax(-1) == plain.argmax(-1)).all())}


def check(name: str) -> dict:
    spec = get_preset(name).backbone
    torch.manual_seed(0)
    with torch.device("cuda"), default_dtype(torch.bfloat16):
        backbone = build_backbone(spec).eval()
    backbone.model.tie_weights()
    ids = torch.randint(3, spec.vocab, (1, PROMPT), device="cuda")
    with torch.inference_mode():
        embeds = backbone.embed(ids)
    mask = torch.ones(1, PROMPT, dtype=torch.long, device="cuda")
    row = {"model": name, "kernel": backbone.kernel_path}
    mamba = backbone.mamba_ssm_mixer is not None  # mamba_ssm has a model of its layout: its step and generate
    if mamba:
        row |= fused_vs_transformers_step(backbone, embeds, mask)
    eager = make_decoder("eager", backbone, 1, PROMPT + NEW_TOKENS)
    greedy(eager, embeds, mask, 8)
    eager_tokens, seconds = timed(lambda: greedy(eager, embeds, mask, EAGER_TOKENS))
    row["eager_tok_s_64"] = EAGER_TOKENS / seconds
    graph = make_decoder("graph", backbone, 1, PROMPT + NEW_TOKENS)
    row["capture_s"] = timed(lambda: greedy(graph, embeds, mask, 8))[1]
    for repeat in range(2):
        graph_tokens, seconds = timed(lambda: greedy(graph, embeds, mask, NEW_TOKENS))
        row[f"graph_tok_s_{repeat}"] = NEW_TOKENS / seconds
    row["graph_eq_eager_64"] = float((graph_tokens[:, :EAGER_TOKENS] == eager_tokens).float().mean())
    row["toks_g"], row["toks_e"] = graph_tokens[0, :12].tolist(), eager_tokens[0, :12].tolist()
    if mamba:
        reference = reference_model(backbone)
        reference_generate(reference, ids, NEW_TOKENS)
        for repeat in range(2):
            reference_tokens, seconds = timed(lambda: reference_generate(reference, ids, NEW_TOKENS))
            row[f"ref_tok_s_{repeat}"] = NEW_TOKENS / seconds
        row["ref_eq_graph"] = float((reference_tokens == graph_tokens).float().mean())
        row["toks_r"] = reference_tokens[0, :12].tolist()
    row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


if __name__ == "__main__":
    for model in sys.argv[1].split(","):
        print(model, json.dumps(check(model)), flush=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
