"""The ablation lab: train projector x backbone combinations on one budget and several seeds, evaluate each on a suite
as `qbench run` does, time each as `qbench speed` does, and write a table per task with its chance level, the mean and
spread over seeds, a 95% interval and a speed column, and which differences between combinations survive.

Phases write files, so they can run on different machines: `train` and `speed` on a GPU, `eval` where lmms-eval is.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qbench import compare, stats
from qbench.backbones import BACKBONES as BACKBONE_CLASSES
from qbench.folder import inside
from qbench.inputs import UserError, read_json
from qbench.presets import TINY_DINOSIGLIP, at_visual_tokens
from qbench.projectors import PROJECTORS as PROJECTOR_CLASSES
from qbench.runs import SUMMARY, Run, read_run, sample_key
from qbench.spec import ProjectorSpec, VLMSpec
from qbench.train import Example, TrainConfig

PROJECTORS = ("mlp", "ldp", "msc", "qmamba")
BACKBONES = ("mamba", "mamba2", "llama")  # the default grid; any registered backbone kind can be asked for
TINY_QUERY_SWEEP = (4, 9, 16, 64)  # Q-Mamba's 64/144/256/729 queries, scaled to the tiny 8 x 8 patch grid
QUERY_SWEEP_BACKBONE = "mamba"  # Q-Mamba's own LLM family
PHASES = ("train", "speed", "eval")
SPEED_FILE, EVAL_FILE = "speed.json", "eval.json"


@dataclass(frozen=True)
class Ablation:
    name: str
    combos: dict[str, VLMSpec]
    config: TrainConfig
    checkpoints: Path  # one trained checkpoint per combination and seed under here
    results: Path  # tables
    seeds: tuple[int, ...] = (0,)

    def folder(self, combo: str) -> Path:
        """A combination's seeds and its speed measurement."""
        return self.checkpoints / combo

    def checkpoint(self, combo: str, seed: int) -> Path:
        return self.folder(combo) / f"seed{seed}"

    def units(self) -> list[tuple[str, int]]:
        """Every (combination, seed) to train and evaluate, seeds innermost."""
        return [(combo, seed) for combo in self.combos for seed in self.seeds]

    def config_of(self, seed: int) -> TrainConfig:
        return dataclasses.replace(self.config, seed=seed)


def tiny_combo(projector: str, backbone: str) -> VLMSpec:
    """A tiny combination: every one with the same vision tower, so only projector x backbone differ."""
    family = BACKBONE_CLASSES[backbone]  # an unknown name fails here, naming the known ones
    return VLMSpec(f"tiny-{projector}-{backbone}", TINY_DINOSIGLIP,
                   ProjectorSpec(projector, PROJECTOR_CLASSES[projector].tiny_options), family.tiny, family.prompt,
                   family.tiny_tokenizer)


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
def my_share(units: list[tuple[str, int]], shard: tuple[int, int]) -> list[tuple[str, int]]:
    """Every n-th (combination, seed) from the i-th: the share of parallel worker i of n."""
    index, count = shard
    return units[index::count]


def train_all(ablation: Ablation, examples: Sequence[Example], device: str | None = None,
              shard: tuple[int, int] = (0, 1), save_dtype: torch.dtype | None = None) -> None:
    """Train every combination per seed (or a worker's share) on the same examples, steps and schedule; the seed
    sets the initialisation and the batch order. Finished ones are kept, interrupted ones resume."""
    from qbench.train import train

    for combo, seed in my_share(ablation.units(), shard):
        train(ablation.combos[combo], examples, ablation.checkpoint(combo, seed), ablation.config_of(seed),
              device=device, save_dtype=save_dtype)


def time_all(ablation: Ablation, device: str, new_tokens: int = 64) -> None:
    """Decode and end-to-end tokens/s of each trained combination (its first seed: the weights' values do not change
    the work) at batch 1, through qbench speed's measurement (CUDA-graph engine on a GPU, eager on the CPU).
    Combinations already timed are kept; untrained ones wait."""
    from qbench.checkpoints import load_vlm
    from qbench.checkpoints.native import is_native
    from qbench.speed.point import Point
    from qbench.speed.roofline import copy_bandwidth_gbs
    from qbench.speed.sweep import run_point

    engine = "graph" if torch.device(device).type == "cuda" else "eager"
    bandwidth = copy_bandwidth_gbs(torch.device(device))
    for combo in ablation.combos:
        path = ablation.checkpoint(combo, ablation.seeds[0])
        if (ablation.folder(combo) / SPEED_FILE).is_file() or not is_native(path):
            continue
        vlm = load_vlm(str(path), device=device)
        row = run_point(vlm, Point(1, engine, new_tokens, 16, 3), bandwidth)
        row |= {"engine": engine, "device": device, "new_tokens": new_tokens, "dtype": str(vlm.dtype)}
        (ablation.folder(combo) / SPEED_FILE).write_text(json.dumps(row, indent=1, default=str))


def evaluate_all(ablation: Ablation, suite: str, limit: int | None, device: str | None = None,
                 data_dir: str = "data", shard: tuple[int, int] = (0, 1)) -> None:
    """Each trained combination and seed (or a worker's share) on `suite`, scored by lmms-eval exactly as `qbench
    run` scores it (those already evaluated are kept)."""
    from qbench.checkpoints import load_vlm
    from qbench.checkpoints.native import is_native
    from qbench.suites.runner import evaluate

    for combo, seed in my_share(ablation.units(), shard):
        path = ablation.checkpoint(combo, seed)
        if evaluated(path, suite, limit):
            continue
        if not is_native(path):
            raise ValueError(f"{combo} seed {seed} is not trained yet ({path}): run the train phase first")
        check_trained(ablation, combo, seed)
        vlm = load_vlm(str(path), device=device or "cpu")
        summary = evaluate(vlm, suite, limit=limit, output=path / "runs", data_dir=data_dir, checkpoint=str(path))
        (path / EVAL_FILE).write_text(json.dumps(summary, indent=1))


def evaluated(path: Path, suite: str, limit: int | None) -> bool:
    """Whether a checkpoint is evaluated already on `suite` with `limit`; a UserError if it was evaluated otherwise
    (its tables would describe another evaluation than the one asked)."""
    record = path / EVAL_FILE
    if not record.is_file():
        return False
    summary = read_json(record, f"remove it and {path / 'runs'} to evaluate again")
    if (summary.get("suite"), summary.get("limit")) != (suite, limit):
        raise UserError(f"{record} holds an evaluation on suite {summary.get('suite')} with --limit "
                        f"{summary.get('limit')}, and this asks suite {suite} with --limit {limit}: ask for the same "
                        f"to write its tables, or remove {record} and {path / 'runs'} to evaluate again")
    return True


def check_trained(ablation: Ablation, combo: str, seed: int) -> None:
    """A checkpoint trained with this ablation's spec and budget (what its train.json records); a UserError
    naming the folder otherwise, so that tables never describe checkpoints of another configuration."""
    path = ablation.checkpoint(combo, seed)
    identity = read_json(path / "train.json", "train it again (--phases train)").get("identity") or {}
    recorded = {"spec": identity.get("spec"), "budget": identity.get("config")}
    asked = {"spec": ablation.combos[combo].to_dict(), "budget": ablation.config_of(seed).to_dict()}
    differs = [what for what in asked if recorded[what] != asked[what]]
    if differs:
        raise UserError(f"{path} was trained with another {' and '.join(differs)} than this ablation asks; give the "
                        "options it was trained with, or another --name to train and evaluate this one elsewhere")


# --- what an ablation is, and its results folder ---------------------------------------------------------------------
def settings(ablation: Ablation, train_questions: int | None = None,
             evaluation: tuple[str, int | None] | None = None) -> dict[str, Any]:
    """What an ablation's tables describe: its budget, seeds and combinations, and where known the training
    questions per dataset and the (suite, --limit) it is evaluated with (ablation.json records them)."""
    found = {"budget": ablation.config.to_dict(), "seeds": list(ablation.seeds),
             "combos": {name: spec.to_dict() for name, spec in ablation.combos.items()}}
    if train_questions is not None:
        found["train_questions"] = train_questions
    if evaluation is not None:
        found["suite"], found["limit"] = evaluation
    return found


def what_differs(recorded: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """The settings in which a recorded ablation differs from the one asked, in words (settings an older record
    lacks are not compared)."""
    found = []
    budget, wanted = recorded.get("budget") or {}, asked["budget"]
    found += [f"{key} {budget[key]} vs {wanted[key]}" for key in wanted
              if key in budget and budget[key] != wanted[key]]
    if "seeds" in recorded and recorded["seeds"] != asked["seeds"]:
        found.append(f"seeds {','.join(map(str, recorded['seeds']))} vs {','.join(map(str, asked['seeds']))}")
    combos = recorded.get("combos") or {}
    if set(combos) != set(asked["combos"]):
        found.append(f"{len(combos)} combinations vs {len(asked['combos'])} ({', '.join(sorted(asked['combos']))})")
    else:
        found += [f"the spec of {name}" for name in combos if combos[name] != asked["combos"][name]]
    found += [f"{key} {recorded[key]} vs {asked[key]}" for key in ("train_questions", "suite", "limit")
              if key in recorded and key in asked and recorded[key] != asked[key]]
    return found


def check_results_folder(ablation: Ablation, asked: dict[str, Any]) -> None:
    """Refuse to write into a results folder holding an ablation of another configuration (it is not
    overwritten), naming the folder, what differs and how to write elsewhere."""
    record = ablation.results / "ablation.json"
    if not record.exists():
        return
    redo = f"give another --name to write this ablation elsewhere, or move {ablation.results} away"
    differs = what_differs(read_json(record, redo), asked)
    if differs:
        raise UserError(f"{ablation.results} holds the results of ablation {ablation.name!r} of another "
                        f"configuration ({'; '.join(differs)}); they are not overwritten: {redo}")


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


def evaluation_run(path: Path) -> Run:
    """A checkpoint's newest finished evaluation (a run folder under its runs/), read and checked."""
    folders = sorted(summary.parent for summary in (path / "runs").glob(f"*/{SUMMARY}"))
    if not folders:
        raise UserError(f"{path / 'runs'} holds no finished evaluation: run the eval phase (--phases eval)")
    return read_run(folders[-1])


def chance_levels(samples: list[dict[str, Any]]) -> dict[str, float]:
    tasks = sorted({row["task"] for row in samples})
    return {task: majority_baseline([row for row in samples if row["task"] == task]) for task in tasks}


def pooled(runs: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per sample with its score averaged over the runs (one per seed) of the same samples, in key order."""
    by_key = [{sample_key(row): row for row in run} for run in runs]
    if any(keys.keys() != by_key[0].keys() for keys in by_key):
        raise compare.NotComparable("the seeds were evaluated on different samples; evaluate them with one --limit")
    return [{**by_key[0][k], "score": statistics.fmean(keys[k]["score"] for keys in by_key)} for k in sorted(by_key[0])]


@dataclass(frozen=True)
class Evaluation:
    """One combination's evaluations, one run per seed."""

    runs: dict[int, Run]

    @property
    def summaries(self) -> dict[int, dict[str, Any]]:
        return {seed: run.summary for seed, run in self.runs.items()}

    @property
    def samples(self) -> dict[int, list[dict[str, Any]]]:
        return {seed: run.rows for seed, run in self.runs.items()}

    def values(self, task: str) -> dict[int, float]:
        """Each seed's score of the task's first metric."""
        return {seed: next(iter(summary["metrics"][task].values())) for seed, summary in self.summaries.items()}

    def pooled(self, task: str) -> list[dict[str, Any]]:
        return pooled([[row for row in rows if row["task"] == task] for rows in self.samples.values()])


def evaluations(ablation: Ablation) -> dict[str, Evaluation]:
    for combo, seed in ablation.units():
        check_trained(ablation, combo, seed)
    return {combo: Evaluation({seed: evaluation_run(ablation.checkpoint(combo, seed)) for seed in ablation.seeds})
            for combo in ablation.combos}


def spread(values: Sequence[float]) -> float:
    """Sample standard deviation over seeds (0 for one seed)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def collect(ablation: Ablation, found: dict[str, Evaluation]) -> list[dict[str, Any]]:
    """One row per combination and task: the mean over seeds of its score, their spread, a 95% bootstrap interval
    over the questions of each question's score averaged over the seeds, the task's chance level, training facts
    (averaged over seeds) and speed."""
    from qbench.vlm import visual_tokens_of

    rows = []
    for combo, spec in ablation.combos.items():
        trained = [json.loads((ablation.checkpoint(combo, seed) / "train.json").read_text()) for seed in ablation.seeds]
        speed_file = ablation.folder(combo) / SPEED_FILE
        speed = json.loads(speed_file.read_text()) if speed_file.is_file() else {}
        evaluation = found[combo]
        first = evaluation.summaries[ablation.seeds[0]]
        chance = chance_levels(evaluation.samples[ablation.seeds[0]])
        for task, metrics in first["metrics"].items():
            values = evaluation.values(task)
            lo, hi = stats.bootstrap(evaluation.pooled(task), stats.mean_score)
            rows.append({"task": task, "combo": combo, "projector": spec.projector.kind,
                         "backbone": spec.backbone.kind, "queries": spec.projector.options.get("queries"),
                         "visual_tokens": visual_tokens_of(spec), "metric": next(iter(metrics)),
                         "value": statistics.fmean(values.values()), "spread": spread(list(values.values())),
                         "ci_lo": lo, "ci_hi": hi, "seeds": len(values),
                         "seed_values": [values[seed] for seed in ablation.seeds],
                         "chance": chance[task], "n": first["n_samples"][task],
                         "steps": trained[0]["steps_done"],
                         "answer_tokens": round(statistics.fmean(t["answer_tokens"] for t in trained)),
                         "final_loss": statistics.fmean(t["final_loss"] for t in trained),
                         "train_s": max(t["seconds"] for t in trained),
                         # train.json from before the count: none skipped (an unskipped overflow leaves NaN weights)
                         "skipped_steps": sum(t.get("skipped_steps", 0) for t in trained),
                         "decode_tokens_per_s": speed.get("decode_tokens_per_s"),
                         "e2e_tokens_per_s": speed.get("e2e_tokens_per_s")})
    return rows


# --- which differences survive -------------------------------------------------------------------------------------
SURVIVAL_RULE = ("a difference survives when its 95% paired bootstrap interval over the questions (each question's "
                 "score averaged over the seeds) excludes zero and every seed alone gives it the same sign")


def one_factor_pairs(combos: dict[str, VLMSpec]) -> list[tuple[str, str, str]]:
    """(A, B, factor) for every two combinations that differ in one factor only: the projector (setting) on one
    backbone, or the backbone under one projector setting."""
    pairs = []
    for a, b in itertools.combinations(combos, 2):
        if combos[a].backbone == combos[b].backbone:
            pairs.append((a, b, "projector"))
        elif combos[a].projector == combos[b].projector:
            pairs.append((a, b, "backbone"))
    return pairs


def differences(ablation: Ablation, found: dict[str, Evaluation]) -> list[dict[str, Any]]:
    """Per task and one-factor pair the difference A - B (mean over seeds), its paired interval and p-value
    (qbench compare's), each seed's difference, and whether it survives (SURVIVAL_RULE)."""
    rows = []
    for a, b, factor in one_factor_pairs(ablation.combos):
        for task in found[a].summaries[ablation.seeds[0]]["metrics"]:
            # in the same sample order; refused for combinations evaluated on different samples
            rows_a, rows_b = compare.paired_rows(found[a].pooled(task), found[b].pooled(task))[task]
            result = compare.compare_task(rows_a, rows_b, rows_a[0]["metric"])
            values_a, values_b = found[a].values(task), found[b].values(task)
            per_seed = [values_a[seed] - values_b[seed] for seed in ablation.seeds]
            same_sign = all(d > 0 for d in per_seed) or all(d < 0 for d in per_seed)
            interval_clear = result["ci"][0] > 0 or result["ci"][1] < 0
            rows.append({"task": task, "factor": factor, "a": a, "b": b, "metric": result["metric"],
                         "n": result["n"], "difference": result["difference"], "ci_lo": result["ci"][0],
                         "ci_hi": result["ci"][1], "p": result["p"], "test": result["test"],
                         "seed_differences": per_seed, "survives": interval_clear and same_sign})
    return rows


def percent(value: float, sign: str = "") -> str:
    """A 0-1 score (or difference) in percent (percentage points), as every table shows it."""
    return f"{100 * value:{sign}.1f}"


def interval_text(row: dict[str, Any], sign: str = "") -> str:
    return f"[{percent(row['ci_lo'], sign)}, {percent(row['ci_hi'], sign)}]"


def score_text(row: dict[str, Any]) -> str:
    """'mean ± spread' over the seeds in percent, as the Markdown tables show a score."""
    return f"{percent(row['value'])} ± {percent(row['spread'])}" if row["seeds"] > 1 else percent(row["value"])


def task_markdown(task: str, table: Any) -> str:
    chance, seeds = table["chance"].iloc[0], int(table["seeds"].iloc[0])
    shown = table.assign(**{"score (%)": [score_text(r) for r in table.to_dict("records")],
                            "95% interval": [interval_text(r) for r in table.to_dict("records")]})
    shown = shown[["combo", "score (%)", "95% interval", "visual_tokens", "final_loss", "skipped_steps",
                   "decode_tokens_per_s", "e2e_tokens_per_s"]]
    header = (f"# {task} ({table['metric'].iloc[0]}, %; chance level {percent(chance)}: the score of always giving "
              f"the most common answer)\n\nscore = mean over {seeds} seed(s)"
              + (" ± their standard deviation" if seeds > 1 else "")
              + f"; 95% interval: bootstrap over the {int(table['n'].iloc[0])} questions (questions about one image "
                "resampled together) of each question's score averaged over the seeds.\n\n")
    return header + shown.to_markdown(index=False, floatfmt=".3f") + "\n"


def differences_markdown(ablation: Ablation, found: list[dict[str, Any]]) -> str:
    survivors = [row for row in found if row["survives"]]
    lines = [f"# Differences that survive ({len(survivors)} of {len(found)})", "",
             f"Pairs of combinations that differ in one factor, per task, in percentage points; {SURVIVAL_RULE}. "
             f"Seeds: {', '.join(map(str, ablation.seeds))}. At 95%, about 1 in 20 of the pairs where nothing "
             "differs passes the interval test by chance; the every-seed condition removes most of those. All "
             "pairs: differences.csv (0-1, as the metrics).", ""]
    if survivors:
        lines += ["| task | factor | A | B | A - B | 95% interval | p | each seed |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['factor']} | {r['a']} | {r['b']} | {percent(r['difference'], '+')} | "
                  f"{interval_text(r, '+')} | {stats.p_text(r['p']).removeprefix('p ')} | "
                  f"{', '.join(percent(d, '+') for d in r['seed_differences'])} |" for r in survivors]
    return "\n".join(lines) + "\n"


def write_tables(ablation: Ablation, rows: list[dict[str, Any]], found: list[dict[str, Any]],
                 asked: dict[str, Any]) -> list[Path]:
    """results/ablation/<name>/: <task>.csv and .md per task, all.csv, differences.md|csv, and ablation.json
    (schema qbench.ablation/1: the settings (budget, seeds, each combination's spec, suite, limit, training
    questions), every row and every difference). Scores in the data files are 0-1, as the metrics; percent in the
    Markdown."""
    import pandas as pd

    check_results_folder(ablation, asked)
    out = ablation.results
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "all.csv", index=False)
    written = [out / "all.csv"]
    for task, table in frame.groupby("task"):
        table = table.drop(columns="task").sort_values("value", ascending=False)
        table.to_csv(out / f"{task}.csv", index=False)
        (out / f"{task}.md").write_text(task_markdown(task, table))
        written += [out / f"{task}.csv", out / f"{task}.md"]
    pd.DataFrame(found).to_csv(out / "differences.csv", index=False)
    (out / "differences.md").write_text(differences_markdown(ablation, found))
    meta = {"schema": "qbench.ablation/1", "name": ablation.name, **asked, "survival_rule": SURVIVAL_RULE,
            "rows": rows, "differences": found}
    (out / "ablation.json").write_text(json.dumps(meta, indent=1))
    return written + [out / "differences.csv", out / "differences.md", out / "ablation.json"]


def ablation(name: str, projectors: Sequence[str], backbones: Sequence[str], config: TrainConfig,
             checkpoints: str | Path = "data/ablation", results: str | Path = "results/ablation",
             seeds: Sequence[int] = (0,)) -> Ablation:
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, e.g. 0,1,2; got {list(seeds)}")
    return Ablation(name, combinations(projectors, backbones), config, inside(checkpoints, name, "--name"),
                    inside(results, name, "--name"), tuple(seeds))


def mini_examples(count: int, seed: int = 0) -> list[Example]:
    """The mini-suites' train split (`count` questions per dataset), generated in memory (the same for every
    training seed)."""
    from qbench.suites.mini import train_records
    from qbench.train import as_examples
    from qbench.verbosity import step

    step(f"making the mini train split: {count} questions per dataset")
    return as_examples(train_records(seed=seed, count=count))


def run(lab: Ablation, phases: Sequence[str], device: str | None, suite: str = "mini", limit: int | None = None,
        train_questions: int = 4000, shard: tuple[int, int] = (0, 1), save_dtype: torch.dtype | None = None
        ) -> list[Path]:
    """The asked phases in order; the tables once every combination and seed is evaluated (a worker's share of the
    train and eval phases with `shard`). Returns the files written."""
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise ValueError(f"unknown phase {unknown[0]!r}; choose from: {', '.join(PHASES)}")
    asked = settings(lab, train_questions if "train" in phases else None,
                     (suite, limit) if "eval" in phases else None)
    check_results_folder(lab, asked)  # before any work: results of another configuration are never overwritten
    if "train" in phases:
        train_all(lab, mini_examples(train_questions), device, shard, save_dtype)
    if "speed" in phases:
        time_all(lab, device or default_device())
    if "eval" in phases:
        evaluate_all(lab, suite, limit, device, shard=shard)
        if shard[1] > 1 and not all((lab.checkpoint(c, s) / EVAL_FILE).is_file() for c, s in lab.units()):
            return []  # other workers' shares are still being evaluated: the last to finish writes the tables
        found = evaluations(lab)
        return write_tables(lab, collect(lab, found), differences(lab, found), asked)
    return []


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
