"""Do qbench's two engines decode the same greedy tokens? On the GPU machine, after .gpu/install.sh:

    python3 bench/same_tokens.py llava fp32,bf16 weights/tiny/tiny-llava

1. Each full-size LLM on random weights in each dtype, LLM only (a 729-token random prompt): eager and graph
   decode side by side, the graph fed eager's tokens, for 64 steps. Prints the steps whose argmax agree, the first
   step that differs with eager's margin between its two best logits there, and the largest logit difference.
2. Each trained checkpoint answering 64 mini-suite evaluation questions in bf16 under both engines: the answers
   that agree, and each engine's exact-match accuracy.

Answer invariance (does an answer depend on the batch it was asked in, or on the engine that answered it?):

    python3 bench/same_tokens.py --answer-invariance cobra-3b,ml-mamba-2.7b,q-mamba-3b,llava-1.5-7b bf16,fp32
    python3 bench/same_tokens.py --answer-invariance weights/tiny/tiny-cobra,weights/tiny/tiny-llava bf16,fp32

3. Each full preset on random weights (seed 0; the tiny twin's built-in tokenizer: the GPU machine has no hub), or
   each trained checkpoint, in each dtype answers 32 mini-suite questions greedily (16 new tokens) three ways: one at a time with
   `VLM.generate` (the reference), as one left-padded batch of 32, and through the answering engine. Per way: the
   share of identical answers (token for token), the share whose first token agrees, and where an answer differs its
   first differing token. For the first token it also records the reference's margin between its two best logits
   and the largest difference between the reference's logits and the batch's, to tell a broken tie (a margin below
   the logits' rounding) from a path that computes something else. Recurrent backbones run once with the GPU's
   default step and once with transformers' step (the CPU's), to tell a step kernel from the rest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from qbench.backbones import Backbone, build_backbone
from qbench.checkpoints import load_vlm
from qbench.engine import ENGINES, make_decoder
from qbench.inputs import resolve_dtype
from qbench.presets import get_preset, tiny_twin
from qbench.speed.environment import environment
from qbench.vlm import build_vlm, default_dtype

PROMPT, STEPS, QUESTIONS, BATCH, INVARIANCE_BATCH = 729, 64, 64, 8, 32


@torch.inference_mode()
def side_by_side(backbone: Backbone, embeds: torch.Tensor, mask: torch.Tensor) -> dict:
    eager = make_decoder("eager", backbone, 1, PROMPT + STEPS)
    graph = make_decoder("graph", backbone, 1, PROMPT + STEPS)
    ours, theirs = eager.prefill(embeds, mask).float(), graph.prefill(embeds, mask).float()
    agree, first, margin, largest = 0, None, None, 0.0
    for step in range(STEPS):
        token = ours.argmax(-1)
        largest = max(largest, float((ours - theirs).abs().max()))
        if bool((theirs.argmax(-1) == token).all()):
            agree += 1
        elif first is None:
            top = ours.topk(2, dim=-1).values[0]
            first, margin = step, float(top[0] - top[1])
        ours, theirs = eager.step(token).float(), graph.step(token).float()
    return {"steps": STEPS, "argmax_agree": agree, "first_difference": first, "eager_margin_there": margin,
            "largest_logit_difference": largest, "logit_scale": float(ours.abs().max())}


def random_llm(name: str, dtype: str) -> dict:
    spec = get_preset(name).backbone
    torch.manual_seed(0)
    with torch.device("cuda"), default_dtype(resolve_dtype(dtype)):
        backbone = build_backbone(spec).eval()
    backbone.model.tie_weights()
    ids = torch.randint(3, spec.vocab, (1, PROMPT), device="cuda")
    with torch.inference_mode():
        embeds = backbone.embed(ids)
    row = {"model": name, "dtype": dtype} | side_by_side(backbone, embeds, torch.ones_like(ids))
    del backbone
    torch.cuda.empty_cache()
    return row


def mini_questions(count: int) -> list[tuple]:
    """(image, prompt, answer) of `count` mini-suite evaluation questions, as many from each dataset."""
    from qbench.suites.mini import PROMPT_SUFFIX, SPLITS, dataset_examples

    return [(e.image, e.qa.question + PROMPT_SUFFIX[name], e.qa.answer)
            for name in SPLITS for e in dataset_examples(name, 0, "eval", count // len(SPLITS))]


def first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def first_token_logits(vlm, images: list, prompts: list[str]) -> torch.Tensor:
    """[B, vocab] fp32 logits of each answer's first token, the prompts prefilled together (left-padded)."""
    embeds, mask, _ = vlm.build_inputs(vlm.encode_images(vlm.preprocess(images)), prompts)
    return make_decoder("eager", vlm.backbone, len(prompts), embeds.shape[1] + 1).prefill(embeds, mask).float()


def agreement(reference: list[list[int]], answers: list[list[int]]) -> dict:
    differ = [first_difference(a, b) for a, b in zip(reference, answers) if a != b]
    return {"identical_share": 1 - len(differ) / len(reference),
            "first_token_identical_share": sum(a[:1] == b[:1] for a, b in zip(reference, answers)) / len(reference),
            "first_differing_tokens": differ}


@torch.inference_mode()
def answer_invariance(name: str, dtype: str) -> list[dict]:
    """`name`: a full preset on random weights (seed 0), or a trained checkpoint's folder. One row per step path (a
    recurrent backbone's default and transformers'; the prefill and its first-token logits are the same for both)."""
    from qbench.engine.answering import AnsweringEngine, device_settings

    if Path(name).is_dir():
        vlm, weights = load_vlm(name, device="cuda", dtype=dtype), "trained"
        spec = vlm.spec
    else:
        spec = get_preset(name)
        spec = spec.replace(tokenizer=tiny_twin(spec).tokenizer)
        torch.manual_seed(0)
        vlm, weights = build_vlm(spec, device="cuda", dtype=resolve_dtype(dtype)).eval(), "random (seed 0)"
    examples = mini_questions(INVARIANCE_BATCH)
    images, prompts = [image for image, _, _ in examples], [prompt for _, prompt, _ in examples]
    alone_logits = torch.cat([first_token_logits(vlm, [image], [prompt]) for image, prompt in zip(images, prompts)])
    together_logits = first_token_logits(vlm, images, prompts)
    best = alone_logits.topk(2, dim=-1).values
    recurrent = "transformers" in vlm.backbone.step_paths  # a default step path and transformers' own to compare
    rows = []
    for step_path in (None, "transformers") if recurrent else (None,):
        vlm.backbone.step_path = step_path
        alone = [vlm.generate_tokens([image], [prompt])[0] for image, prompt in zip(images, prompts)]
        together = vlm.generate_tokens(images, prompts)
        engine = AnsweringEngine(vlm, device_settings(vlm)).answer_tokens(images, prompts, 16)
        rows.append({"check": "answer_invariance", "model": name, "dtype": dtype, "weights": weights,
                     "tokenizer": spec.tokenizer, "step_path": vlm.backbone.decode_path(vlm.device) if recurrent else None,
                     "max_new_tokens": 16, "questions": len(examples), "batch": len(examples),
                     "batch_vs_alone": agreement(alone, together), "engine_vs_alone": agreement(alone, engine),
                     "engine_vs_batch": agreement(together, engine),
                     "first_token_margins": (best[:, 0] - best[:, 1]).tolist(),
                     "first_token_logit_differences": (alone_logits - together_logits).abs().amax(-1).tolist(),
                     "logit_scale": float(alone_logits.abs().amax())})
    del vlm
    torch.cuda.empty_cache()
    return rows


def trained(path: str) -> dict:
    vlm = load_vlm(path, device="cuda", dtype="bf16")
    examples = mini_questions(QUESTIONS)
    answers = {}
    for engine in ("eager", "graph"):
        batches = [examples[start:start + BATCH] for start in range(0, len(examples), BATCH)]
        answers[engine] = [answer for batch in batches for answer in
                           vlm.generate([image for image, _, _ in batch], [q for _, q, _ in batch],
                                        decoder=ENGINES[engine])]
    truth = [answer.strip().lower() for _, _, answer in examples]
    return {"checkpoint": path, "questions": len(examples),
            "answers_agree": sum(a == b for a, b in zip(answers["eager"], answers["graph"])),
            **{f"{engine}_exact_match": sum(a.lower() == t for a, t in zip(answers[engine], truth)) / len(truth)
               for engine in answers}}


if __name__ == "__main__":
    if sys.argv[1] == "--answer-invariance":
        print(json.dumps({"check": "environment", **environment(torch.device("cuda"))}), flush=True)
        for model in sys.argv[2].split(","):
            for dtype in sys.argv[3].split(","):
                for row in answer_invariance(model, dtype):
                    print(json.dumps(row), flush=True)
        sys.exit(0)
    models, dtypes = sys.argv[1].split(","), sys.argv[2].split(",")
    for model in models:
        for dtype in dtypes:
            print(json.dumps(random_llm(model, dtype)), flush=True)
    for path in sys.argv[3:]:
        print(json.dumps(trained(path)), flush=True)
