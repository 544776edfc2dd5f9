"""The ablation lab: train projector x backbone combinations on one budget, evaluate each on a suite as `qbench run`
does, time each as `qbench speed` does, and write a table per task with its chance level and a speed column.

Phases write files, so they can run on different machines: `train` and `speed` on a GPU, `eval` where lmms-eval is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbench.presets import (
    TINY_BACKBONES,
    TINY_DINOSIGLIP,
    TINY_PROJECTOR_OPTIONS,
    TINY_TOKENIZERS,
    at_visual_tokens,
)
from qbench.spec import ProjectorSpec, VLMSpec
from qbench.train import Example, TrainConfig

PROJECTORS = ("mlp", "ldp", "msc", "qmamba")
BACKBONES = ("mamba", "mamba2", "llama")
PROMPT_OF = {"mamba": "zephyr", "mamba2": "zephyr", "llama": "llava"}
TINY_QUERY_SWEEP = (4, 9, 16, 64)  # Q-Mamba's 64/144/256/729 queries, scaled to the tiny 8 x 8 patch grid
QUERY_SWEEP_BACKBONE = "mamba"  # Q-Mamba's own LLM family
PHASES = ("train", "speed", "eval")
SPEED_FILE, EVAL_FILE = "speed.json", "eval.json"


@dataclass(frozen=True)
class Ablation:
    name: str
    combos: dict[str, VLMSpec]
    config: TrainConfig
    checkpoints: Path  # one trained checkpoint per combination under here
    results: Path  # tables

    def checkpoint(self, combo: str) -> Path:
        return self.checkpoints / combo


def tiny_combo(projector: str, backbone: str) -> VLMSpec:
    """A tiny combination: every one with the same vision tower, so only projector x backbone differ."""
    if backbone not in TINY_BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from: {', '.join(TINY_BACKBONES)}")
    from qbench.projectors import PROJECTORS

    PROJECTORS[projector]  # names the known projectors if this one is not
    return VLMSpec(f"tiny-{projector}-{backbone}", TINY_DINOSIGLIP,
                   ProjectorSpec(projector, TINY_PROJECTOR_OPTIONS.get(projector, {})), TINY_BACKBONES[backbone],
                   PROMPT_OF[backbone], TINY_TOKENIZERS[backbone])


def combinations(projectors: Sequence[str], backbones: Sequence[str],
                 queries: Sequence[int] = TINY_QUERY_SWEEP) -> dict[str, VLMSpec]:
    """Every projector x backbone, plus the Q-Mamba query-count sweep on its own backbone (Mamba) when both are
    asked for."""
    combos = {}
    for backbone in backbones:
        for projector in projectors:
            spec = tiny_combo(projector, backbone)
            combos[spec.name] = spec
            if projector == "qmamba" and backbone == QUERY_SWEEP_BACKBONE:
                for count in queries:
                    swept = at_visual_tokens(spec, count)
                    swept = swept.replace(name=f"{spec.name}-q{count}")
                    if swept.projector != spec.projector:
                        combos[swept.name] = swept
    return combos


# --- phases --------------------------------------------------------------------------------------------------------
def train_all(ablation: Ablation, examples: Sequence[Example], device: str | None = None,
              shard: tuple[int, int] = (0, 1)) -> None:
    """Train every combination (or every n-th, for parallel workers) on the same examples, steps, schedule and
    seed; finished ones are kept, interrupted ones resume."""
    from qbench.train import train

    index, count = shard
    for position, (combo, spec) in enumerate(ablation.combos.items()):
        if position % count == index:
            train(spec, examples, ablation.checkpoint(combo), ablation.config, device=device)


def time_all(ablation: Ablation, device: str, new_tokens: int = 64) -> None:
    """Decode and end-to-end tokens/s of each trained combination at batch 1, through qbench speed's measurement
    (CUDA-graph engine on a GPU, eager on the CPU). Combinations already timed are kept; untrained ones wait."""
    import torch

    from qbench.checkpoints import load_vlm
    from qbench.checkpoints.native import is_native
    from qbench.speed.point import Point
    from qbench.speed.roofline import copy_bandwidth_gbs
    from qbench.speed.sweep import run_point

    engine = "graph" if torch.device(device).type == "cuda" else "eager"
    bandwidth = copy_bandwidth_gbs(torch.device(device))
    for combo in ablation.combos:
        path = ablation.checkpoint(combo)
        if (path / SPEED_FILE).is_file() or not is_native(path):
            continue
        vlm = load_vlm(str(path), device=device)
        row = run_point(vlm, Point(1, engine, new_tokens, 16, 3), bandwidth)
        row |= {"engine": engine, "device": device, "new_tokens": new_tokens, "dtype": str(vlm.dtype)}
        (ablation.checkpoint(combo) / SPEED_FILE).write_text(json.dumps(row, indent=1, default=str))


def evaluate_all(ablation: Ablation, suite: str, limit: int | None, device: str | None = None,
                 data_dir: str = "data") -> None:
    """Each trained combination on `suite`, scored by lmms-eval exactly as `qbench run` scores it (combinations
    already evaluated are kept)."""
    from qbench.checkpoints import load_vlm
    from qbench.checkpoints.native import is_native
    from qbench.suites.runner import evaluate

    for combo in ablation.combos:
        path = ablation.checkpoint(combo)
        if (path / EVAL_FILE).is_file():
            continue
        if not is_native(path):
            raise ValueError(f"{combo} is not trained yet ({path}): run the train phase first")
        vlm = load_vlm(str(path), device=device or "cpu")
        summary = evaluate(vlm, suite, limit=limit, output=path / "runs", data_dir=data_dir, checkpoint=str(path))
        (path / EVAL_FILE).write_text(json.dumps(summary, indent=1))


# --- tables --------------------------------------------------------------------------------------------------------
def majority_baseline(samples: list[dict[str, Any]]) -> float:
    """Chance level of a task: its score when every question gets the task's most common answer."""
    common, _ = Counter(first_answer(s["target"]) for s in samples).most_common(1)[0]
    return sum(answer_score(common, s["target"]) for s in samples) / len(samples)


def answer_score(answer: str, target: Any) -> float:
    """One answer's score as lmms-eval gives it: against several annotators, VQA accuracy (each annotator left out
    in turn, min(1, matches among the others / 3), averaged); against one reference, exact match."""
    references = [normalise(a) for a in (target if isinstance(target, list) else [target])]
    if len(references) == 1:
        return float(answer == references[0])
    matches = sum(reference == answer for reference in references)
    return sum(min(1.0, (matches - (reference == answer)) / 3) for reference in references) / len(references)


def first_answer(target: Any) -> str:
    """A question's reference answer: the most common of several annotators' answers, normalised."""
    answers = target if isinstance(target, list) else [target]
    return Counter(normalise(a) for a in answers).most_common(1)[0][0]


def normalise(answer: Any) -> str:
    return str(answer).strip().lower()


def chance_levels(run_folder: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (run_folder / "samples.jsonl").read_text().splitlines()]
    tasks = sorted({row["task"] for row in rows})
    return {task: majority_baseline([row for row in rows if row["task"] == task]) for task in tasks}


def collect(ablation: Ablation) -> list[dict[str, Any]]:
    """One row per combination and task: its score, the task's chance level, training facts and speed."""
    from qbench.vlm import visual_tokens_of

    rows = []
    for combo, spec in ablation.combos.items():
        path = ablation.checkpoint(combo)
        trained = json.loads((path / "train.json").read_text())
        speed = json.loads((path / SPEED_FILE).read_text()) if (path / SPEED_FILE).is_file() else {}
        summary = json.loads((path / EVAL_FILE).read_text())
        runs = sorted((path / "runs").glob("*/samples.jsonl"))
        chance = chance_levels(runs[-1].parent)
        for task, metrics in summary["metrics"].items():
            metric, score = next(iter(metrics.items()))
            rows.append({"task": task, "combo": combo, "projector": spec.projector.kind,
                         "backbone": spec.backbone.kind, "queries": spec.projector.options.get("queries"),
                         "visual_tokens": visual_tokens_of(spec), "metric": metric, "value": score,
                         "chance": chance[task], "n": summary["n_samples"][task],
                         "steps": trained["steps_done"], "answer_tokens": trained["answer_tokens"],
                         "final_loss": trained["final_loss"], "train_s": trained["seconds"],
                         # train.json from before the count: none skipped (an unskipped overflow leaves NaN weights)
                         "skipped_steps": trained.get("skipped_steps", 0),
                         "decode_tokens_per_s": speed.get("decode_tokens_per_s"),
                         "e2e_tokens_per_s": speed.get("e2e_tokens_per_s")})
    return rows


def write_tables(ablation: Ablation, rows: list[dict[str, Any]]) -> list[Path]:
    """results/ablation/<name>/: <task>.csv and .md per task, all.csv, and ablation.json (schema qbench.ablation/1:
    the budget, every row, and each combination's spec)."""
    import pandas as pd

    out = ablation.results
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "all.csv", index=False)
    written = [out / "all.csv"]
    for task, table in frame.groupby("task"):
        table = table.drop(columns="task").sort_values("value", ascending=False)
        table.to_csv(out / f"{task}.csv", index=False)
        chance = table["chance"].iloc[0]
        header = (f"# {task} ({table['metric'].iloc[0]}; chance level {chance:.3f}: the score of always giving the most "
                  f"common answer)\n\n")
        (out / f"{task}.md").write_text(header + table.to_markdown(index=False, floatfmt=".3f") + "\n")
        written += [out / f"{task}.csv", out / f"{task}.md"]
    meta = {"schema": "qbench.ablation/1", "name": ablation.name, "budget": ablation.config.to_dict(), "rows": rows,
            "combos": {name: spec.to_dict() for name, spec in ablation.combos.items()}}
    (out / "ablation.json").write_text(json.dumps(meta, indent=1))
    return written + [out / "ablation.json"]


def ablation(name: str, projectors: Sequence[str], backbones: Sequence[str], config: TrainConfig,
             checkpoints: str | Path = "data/ablation", results: str | Path = "results/ablation") -> Ablation:
    return Ablation(name, combinations(projectors, backbones), config, Path(checkpoints) / name, Path(results) / name)


def mini_examples(count: int, seed: int = 0) -> list[Example]:
    """The mini-suites' train split (`count` questions per dataset), generated in memory."""
    from qbench.suites.mini import train_records
    from qbench.train import as_examples

    return as_examples(train_records(seed=seed, count=count))


def run(lab: Ablation, phases: Sequence[str], device: str | None, suite: str = "mini", limit: int | None = None,
        train_questions: int = 4000, shard: tuple[int, int] = (0, 1)) -> list[Path]:
    """The asked phases in order; the tables once every combination is evaluated. Returns the files written."""
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise ValueError(f"unknown phase {unknown[0]!r}; choose from: {', '.join(PHASES)}")
    if "train" in phases:
        train_all(lab, mini_examples(train_questions, lab.config.seed), device, shard)
    if "speed" in phases:
        time_all(lab, device or default_device())
    if "eval" in phases:
        evaluate_all(lab, suite, limit, device)
        return write_tables(lab, collect(lab))
    return []


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
