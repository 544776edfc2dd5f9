"""`qbench run`: a model on a suite through lmms-eval, written to <output>/<model>__<suite>__<time>/.

    summary.json    schema qbench.run/1: metric per task, model spec, checkpoint and its hash, variants,
                    library versions, device, samples/s
    samples.jsonl   one row per sample: task, doc_id, question_id, prompt, answer, target, score, error
    lmms_eval_results.json   lmms-eval's own results (configs, versions, sample counts)

While it runs, answers go to progress-rank<N>.jsonl; a run that stops early leaves them (and no summary), and
the same command with the same --output resumes it, so every sample ends up answered and scored exactly once.
Under torchrun (gloo on CPUs, NCCL on GPUs) every process answers its share and rank 0 writes the results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from qbench.inputs import ensure_writable
from qbench.suites import journal
from qbench.suites.lmms_model import QBenchLMM, process_rank
from qbench.suites.registry import Suite, load_suite
from qbench.suites.variants import Variant, parse_variants
from qbench.vlm import VLM

SCHEMA = "qbench.run/1"
DEFAULT_OUTPUT = "results/runs"
DEFAULT_DATA = "data"
MAX_NEW_TOKENS = 16  # for every task and every model (lmms-eval's POPE asks 128; its answers are one word)
SETTINGS = "run.json"  # what a run must match to resume this one


@dataclass(frozen=True)
class Prepared:
    suite: Suite
    tasks: dict[str, Any]  # name -> lmms-eval Task, data loaded
    variants: list[Variant]
    data: dict[str, Any]  # where the data came from


# --- distributed ----------------------------------------------------------------------------------------------------
def init_distributed(device: torch.device) -> None:
    _, _, world = process_rank()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def from_rank0(value: Any) -> Any:
    """Rank 0's value on every process."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank0_first(make):
    """Rank 0 runs `make` first (filling caches, writing data), then the others; if it fails, all stop."""
    if not dist.is_initialized():
        return make()
    rank, _, _ = process_rank()
    result, error = None, None
    if rank == 0:
        try:
            result = make()
        except Exception as failure:  # noqa: BLE001 - re-raised below, after telling the other ranks
            error = failure
    failed = from_rank0(error is not None)
    if error is not None:
        raise error
    if failed:
        raise RuntimeError("rank 0 could not prepare the data (its error says why)")
    return result if rank == 0 else make()


# --- preparing --------------------------------------------------------------------------------------------------------
def prepare(suite_name: str, data_dir: str | Path = DEFAULT_DATA, variants: list[str] | tuple[str, ...] = (),
            max_new_tokens: int = MAX_NEW_TOKENS) -> Prepared:
    """The suite's tasks with their data loaded (generated first for the mini suite); fails fast and clearly."""
    from qbench.suites import mini
    from qbench.suites.tasks import load_tasks

    suite = load_suite(suite_name)
    chosen = parse_variants(list(variants))
    data_dir = Path(data_dir)
    data: dict[str, Any] = {"dir": str(data_dir)}
    if suite.generated:
        data["mini"] = rank0_first(lambda: mini.ensure(data_dir))
    tasks = rank0_first(lambda: load_tasks(suite, data_dir, chosen, max_new_tokens))
    return Prepared(suite, tasks, chosen, data)


# --- the run folder ---------------------------------------------------------------------------------------------------
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_folder(output: Path, settings: dict[str, Any]) -> Path:
    """The newest unfinished run with the same settings (to resume), else a new folder."""
    prefix = f"{settings['model']}__{settings['suite']}__"
    for folder in sorted(output.glob(prefix + "*"), reverse=True):
        saved = folder / SETTINGS
        if saved.is_file() and not (folder / "summary.json").exists():
            if {k: v for k, v in json.loads(saved.read_text()).items() if k != "started"} == settings:
                return folder
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder, count = output / (prefix + stamp), 1
    while folder.exists():
        count += 1
        folder = output / f"{prefix}{stamp}-{count}"
    folder.mkdir(parents=True)
    (folder / SETTINGS).write_text(json.dumps({**settings, "started": now()}, indent=2) + "\n")
    return folder


# --- facts for the summary --------------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    """Of a file, or of every file in a folder (names and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path)).encode() if file != path else b"")
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def checkpoint_info(source: str) -> dict[str, Any]:
    """The weights' source (a preset's published id, 'random', a path, or FORMAT:PATH) and, if local, its hash."""
    local = [Path(p) for p in (source, source.partition(":")[2]) if p and Path(p).exists()]
    return {"source": source, "sha256": sha256(local[0]) if local else None}


def versions() -> dict[str, str]:
    found = {name: metadata.version(name) for name in ("torch", "transformers", "lmms_eval", "datasets", "qbench")}
    return {**found, "python": platform.python_version()}


def device_name(device: torch.device) -> str:
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def metrics_of(results: dict[str, Any], task: str) -> dict[str, float]:
    """lmms-eval's aggregate metrics of one task, by lmms-eval's metric names (filter suffix and stderr dropped)."""
    found = {}
    for name, value in results["results"][task].items():
        metric, _, _ = name.partition(",")
        if "," in name and "_stderr" not in metric and isinstance(value, (int, float)):
            found[metric] = float(value)
    return found


def sample_score(logged: dict[str, Any], metric: str) -> float:
    value = logged[metric]
    return float(value["score"] if isinstance(value, dict) else value)


def scored_rows(results: dict[str, Any], tasks: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Every sample once: the answer rows of all processes, with lmms-eval's per-sample score of the task's first
    metric."""
    answers = journal.read_rows(folder)
    rows = []
    for name, task in tasks.items():
        metric = task.config.metric_list[0]["metric"]
        for logged in sorted(results["samples"][name], key=lambda s: s["doc_id"]):
            row = answers[name, logged["doc_id"]]
            rows.append({**row, "score": sample_score(logged, metric)})
    return rows


# --- running ----------------------------------------------------------------------------------------------------------
def answer_and_score(lm: QBenchLMM, prepared: Prepared, limit: int | None, folder: Path) -> dict[str, Any] | None:
    """lmms-eval's evaluation of the prepared tasks (results on rank 0). Global random seeds are left alone: the
    answers are greedy, and a caller in the middle of training keeps its random state."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    return simple_evaluate(model=lm, tasks=list(prepared.tasks.values()), limit=limit, bootstrap_iters=0,
                           log_samples=True, task_manager=TaskManager(include_defaults=False, model_name="qbench"),
                           cli_args=argparse.Namespace(output_path=str(folder), process_with_media=False),
                           datetime_str=datetime.now().strftime("%Y%m%d_%H%M%S"), random_seed=None,
                           numpy_random_seed=None, torch_random_seed=None, distributed_executor_backend="torchrun")


def work_done(lm: QBenchLMM) -> tuple[int, float]:
    """Samples answered by the model and the longest time any process spent on them, over all processes."""
    work = [(lm.generated, lm.seconds)]
    if dist.is_initialized():
        work = [None] * dist.get_world_size()
        dist.all_gather_object(work, (lm.generated, lm.seconds))
    return sum(n for n, _ in work), max(s for _, s in work)


def summarize(vlm: VLM, prepared: Prepared, settings: dict[str, Any], results: dict[str, Any],
              rows: list[dict[str, Any]], work: tuple[int, float], batch_size: int, reused: int,
              started: str) -> dict[str, Any]:
    generated, seconds = work
    return {
        "schema": SCHEMA, "model": settings["model"], "suite": prepared.suite.name, "spec": vlm.spec.to_dict(),
        "checkpoint": settings["checkpoint"], "metrics": {name: metrics_of(results, name) for name in prepared.tasks},
        "variants": settings["variants"],
        "n_samples": {name: sum(r["task"] == name for r in rows) for name in prepared.tasks},
        "errors": sum(r["error"] is not None for r in rows),
        "samples_per_s": generated / seconds if generated else None, "device": device_name(vlm.device),
        "world_size": dist.get_world_size() if dist.is_initialized() else 1, "dtype": settings["dtype"],
        "max_new_tokens": settings["max_new_tokens"], "limit": settings["limit"], "batch_size": batch_size,
        "data": prepared.data, "resumed_samples": reused, "versions": versions(), "started": started,
        "finished": now(),
    }


def write_results(folder: Path, summary: dict[str, Any], rows: list[dict[str, Any]], results: dict[str, Any]) -> None:
    from lmms_eval.utils import handle_non_serializable

    with (folder / "samples.jsonl").open("w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    (folder / "lmms_eval_results.json").write_text(json.dumps(
        {k: v for k, v in results.items() if k != "samples"}, indent=2, default=handle_non_serializable))
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")  # last: the run is complete
    journal.clear(folder)


def execute(vlm: VLM, model: str, prepared: Prepared, checkpoint: dict[str, Any], output: str | Path,
            limit: int | None, batch_size: int, max_new_tokens: int) -> tuple[dict[str, Any] | None, Path]:
    """Answer and score every task in a new or resumed run folder; rank 0 returns the summary (others None)."""
    rank, _, _ = process_rank()
    settings = {"model": model, "suite": prepared.suite.name, "checkpoint": checkpoint, "limit": limit,
                "variants": {v.option: v.value for v in prepared.variants}, "max_new_tokens": max_new_tokens,
                "dtype": str(vlm.dtype).removeprefix("torch.")}
    folder = Path(from_rank0(str(run_folder(Path(output), settings)) if rank == 0 else None))
    lm = QBenchLMM(vlm=vlm, batch_size=batch_size, max_new_tokens=max_new_tokens,
                   journal=journal.Journal(folder, rank))
    reused = len(lm.journal.rows)
    results = answer_and_score(lm, prepared, limit, folder)
    work = work_done(lm)
    summary = None
    if rank == 0:
        rows = scored_rows(results, prepared.tasks, folder)
        started = json.loads((folder / SETTINGS).read_text())["started"]
        summary = summarize(vlm, prepared, settings, results, rows, work, batch_size, reused, started)
        write_results(folder, summary, rows, results)
    barrier()
    return summary, folder


def run(model: str, suite: str, limit: int | None = None, checkpoint: str | None = None,
        data_dir: str | Path = DEFAULT_DATA, output: str | Path = DEFAULT_OUTPUT, device: str | None = None,
        dtype: str | None = None, batch_size: int = 8, variants: list[str] | tuple[str, ...] = (),
        max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[dict[str, Any] | None, Path]:
    """`qbench run`: check the device, weights, tokenizer and output folder, load the data (failing fast), then the model, then answer and score. Returns (summary on rank 0,
    else None; the run folder)."""
    from qbench.checkpoints import check_ready, load_vlm, model_spec, resolve_dtype
    from qbench.suites.lmms_model import pick_device

    spec = model_spec(model)
    chosen = pick_device(device)
    precision = resolve_dtype(dtype, chosen)
    check_ready(model, checkpoint)
    ensure_writable(output, "--output")
    init_distributed(chosen)
    prepared = prepare(suite, data_dir, variants, max_new_tokens)
    vlm = load_vlm(model, checkpoint, chosen, precision)
    source = checkpoint or (model if Path(model).is_dir() else spec.weights)
    return execute(vlm, spec.name, prepared, checkpoint_info(source), output, limit, batch_size, max_new_tokens)


def evaluate(vlm: VLM, suite: str = "mini", limit: int | None = None, output: str | Path = DEFAULT_OUTPUT,
             data_dir: str | Path = DEFAULT_DATA, batch_size: int = 8, variants: list[str] | tuple[str, ...] = (),
             checkpoint: str | None = None) -> dict[str, Any] | None:
    """Evaluate a VLM already in memory (e.g. one being trained) on a suite, exactly as `qbench run` does, and
    return the run summary (schema qbench.run/1; None on ranks other than 0). The mini suite's data is generated
    under data_dir on first use. `checkpoint` only records where the weights came from (e.g. a save_native folder).
    The VLM is evaluated in eval mode and given back in the mode it came in; global random states are untouched.
    """
    init_distributed(vlm.device)
    prepared = prepare(suite, data_dir, variants, MAX_NEW_TOKENS)
    info = checkpoint_info(checkpoint) if checkpoint else {"source": "in-memory", "sha256": None}
    training = vlm.training
    vlm.eval()
    try:
        summary, _ = execute(vlm, vlm.spec.name, prepared, info, output, limit, batch_size, MAX_NEW_TOKENS)
    finally:
        vlm.train(training)
    return summary
