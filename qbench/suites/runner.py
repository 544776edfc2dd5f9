"""`qbench run`: a model on a suite through lmms-eval, written to <output>/<model>__<suite>__<time>/.

    summary.json    schema qbench.run/1: metric per task, model spec, checkpoint and its hash, variants,
                    library versions, device, samples/s
    samples.jsonl   one row per sample: task, doc_id, question_id (a string), prompt, answer, target (a list),
                    image (what image it asks about: the dataset's image id, or a digest of the image), metric
                    (the task's first), score (lmms-eval's, by that metric), error
    lmms_eval_results.json   lmms-eval's own results (configs, versions, sample counts)
    lmms_eval/      files lmms-eval's tasks write themselves, kept out of the folder's top level: TextVQA's
                    submissions/textvqa_submission_<time>.json (its answers in the challenge's format; the file to
                    upload for a test split, so kept rather than suppressed)

    run.json        what was asked (model, suite, limit, variants, max_new_tokens, dtype) and the identity of what
                    answers: the weights (checkpoint hash, or the seed of random weights) and each task's data
                    (local copy fingerprint or hub revision)

While it runs, answers go to progress-rank<N>.jsonl; a run that stops early leaves them (and no summary), and
the same command with the same --output resumes it, so every sample ends up answered and scored exactly once.
Resuming with other weights or data is refused (the message says what changed); while a process writes a run
folder it holds the folder's lock, and a second process asking for the same run is refused, naming the first.
Under torchrun (gloo on CPUs, NCCL on GPUs) every process answers its share and rank 0 writes the results.
"""

from __future__ import annotations

import argparse
import glob
import json
import dataclasses
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from qbench import stats
from qbench.inputs import (
    UserError,
    check_folder,
    dtype_name,
    ensure_writable,
    process_rank,
    resolve_device,
    resolve_dtype,
)
from qbench.fingerprint import fingerprint, weights_digest
from qbench.folder import FolderBusy, FolderLock, inside, naming_full_disk, write_atomic
from qbench.suites import journal
from qbench.suites.lmms_model import ENGINES, QBenchLMM
from qbench.suites.registry import Suite
from qbench.suites.tasks import check_caches
from qbench.speed.environment import package_version
from qbench.suites.variants import Variant, parse_variants, prompt_variant
from qbench.verbosity import muted, step
from qbench.vlm import VLM

if TYPE_CHECKING:
    from qbench.checkpoints import ModelSource

SCHEMA = "qbench.run/1"
DEFAULT_OUTPUT = "results/runs"
DEFAULT_DATA = "data"
DATA_ENV = "QBENCH_DATA_DIR"  # where --data-dir (and lmms-eval's qbench tasks) look by default
MAX_NEW_TOKENS = 16  # for every task and every model (lmms-eval's POPE asks 128; its answers are one word)
SETTINGS = "run.json"  # what a run must match to resume this one
SEED = 0  # of random weights, unless --seed says otherwise
IDENTITY = ("checkpoint", "data")  # what answers: a run asked again must have the same to resume
LMMS_EVAL_FILES = "lmms_eval"  # the files lmms-eval's tasks write themselves (TextVQA's submissions/...json)


@dataclass(frozen=True)
class Prepared:
    suite: Suite
    tasks: dict[str, Any]  # name -> lmms-eval Task, data loaded
    variants: list[Variant]
    data: dict[str, dict[str, str | None]]  # task -> where its data came from (tasks.provenance)


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
def prepare(suite_name: str | None, data_dir: str | Path = DEFAULT_DATA, variants: list[str] | tuple[str, ...] = (),
            max_new_tokens: int = MAX_NEW_TOKENS, tasks: Sequence[str] = (),
            include_paths: Sequence[str | Path] = ()) -> Prepared:
    """The tasks of the suite (a name or a YAML file) or the `tasks` given, found in the include paths, qbench's
    suites or lmms-eval, with their data loaded (generated first for the mini suite); fails fast and clearly."""
    from qbench.suites import mini
    from qbench.suites.catalog import find_suite
    from qbench.suites.tasks import load_tasks, provenance

    suite = find_suite(suite_name, tasks, include_paths)
    chosen = parse_variants(list(variants))
    data_dir = Path(data_dir)
    if suite.generated:
        rank0_first(lambda: mini.ensure(data_dir))
    step(f"loading the data of {len(suite.tasks)} task(s)")
    loaded = rank0_first(lambda: load_tasks(suite, data_dir, chosen, max_new_tokens))
    data = {task.task: provenance(task, data_dir, loaded[task.task]) for task in suite.tasks}
    return Prepared(suite, loaded, chosen, data)


# --- the run folder ---------------------------------------------------------------------------------------------------
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResumeRefused(ValueError):
    """An unfinished run asked for again with other weights or data; the message says what changed."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C: its answers so far are kept in `folder`, and the same command resumes it."""

    def __init__(self, folder: Path, kept: int):
        super().__init__(f"{kept} answers kept in {folder}")
        self.folder, self.kept = folder, kept


def folder_prefix(request: dict[str, Any], identity: dict[str, Any]) -> str:
    """How a run folder's name begins: <model>__<suite>__, or with random weights <model>-random-seed<N>__<suite>__,
    so that a folder of chance-level answers says so."""
    checkpoint = identity.get("checkpoint") or {}
    weights = f"-random-seed{checkpoint.get('seed')}" if checkpoint.get("source") == "random" else ""
    return f"{request['model']}{weights}__{request['suite']}__"


def unfinished(output: Path, request: dict[str, Any], prefix: str) -> Path | None:
    """The newest run folder under `output` (named `prefix`...) asked with the same request that has no summary
    yet."""
    for folder in sorted(output.glob(glob.escape(prefix) + "*"), reverse=True):
        saved = folder / SETTINGS
        if saved.is_file() and not (folder / "summary.json").exists():
            if {key: value for key, value in json.loads(saved.read_text()).items() if key in request} == request:
                return folder
    return None


def changes(saved: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """What differs between a run folder's weights and data and those given now, in words."""
    found = []
    if saved.get("checkpoint") != identity["checkpoint"]:
        found.append(f"the weights (then {saved.get('checkpoint')}, now {identity['checkpoint']})")
    if "data" not in saved:
        return [*found, "the data (not recorded then)"]
    then, now_ = saved["data"], identity["data"]
    tasks = [task for task in sorted(set(then) | set(now_)) if then.get(task) != now_.get(task)]
    if tasks:
        copies = sorted({f"{data_at(then.get(task))} -> {data_at(now_.get(task))}" for task in tasks})
        found.append(f"the data of {', '.join(tasks)} ({'; '.join(copies)})")
    return found


def data_at(data: dict[str, str | None] | None) -> str:
    """A task's data in a few words: where it is and the start of its fingerprint."""
    if not data:
        return "none"
    return f"{data['path'] or data['hub_id']} {(data['fingerprint'] or 'unpinned')[:12]}"


def claim_folder(output: Path, request: dict[str, Any], identity: dict[str, Any]) -> tuple[Path, FolderLock]:
    """The run folder to write, locked for this process: the unfinished run of the same request (resumed, if its
    weights and data are the ones given now), else a new folder. FolderBusy if another process writes it."""
    with FolderLock(output, wait=True):  # one process at a time chooses, so two cannot both start a new folder
        prefix = folder_prefix(request, identity)
        folder = unfinished(output, request, prefix)
        if folder is not None:
            lock = FolderLock(folder)
            saved = json.loads((folder / SETTINGS).read_text())
            changed = changes(saved, identity)
            if changed:
                lock.release()
                raise ResumeRefused(f"{folder} holds an unfinished run of the same request whose answers were made "
                                    f"with other inputs: {'; '.join(changed)}. Its answers cannot be merged with new "
                                    f"ones: to start fresh, remove or move {folder}, or give another --output")
            return folder, lock
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        folder, count = inside(output, prefix + stamp, "the run folder of model"), 1
        while folder.exists():
            count += 1
            folder = inside(output, f"{prefix}{stamp}-{count}", "the run folder of model")
        lock = FolderLock(folder)
        write_atomic(folder / SETTINGS, json.dumps({**request, **identity, "started": now()}, indent=2) + "\n")
        return folder, lock


# --- facts for the summary --------------------------------------------------------------------------------------------
def checkpoint_info(source: str, seed: int | None = None) -> dict[str, Any]:
    """The weights' source (a preset's published id, 'random', a path, or FORMAT:PATH), its hash if local, and the
    seed random weights were drawn with."""
    local = [Path(p) for p in (source, source.partition(":")[2]) if p and Path(p).exists()]
    return {"source": source, "sha256": fingerprint(local[0]) if local else None,
            "seed": seed if source == "random" else None}


def versions() -> dict[str, str | None]:
    """The libraries' versions; qbench's from its source when it runs from a checkout that was not installed."""
    import qbench

    found = {name: package_version(name) for name in ("torch", "transformers", "lmms_eval", "datasets")}
    return {**found, "qbench": package_version("qbench") or qbench.__version__, "python": platform.python_version()}


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


def with_answer_yes_ratio(rows: list[dict[str, Any]], metrics: dict[str, dict[str, float]]) -> None:
    """Beside lmms-eval's pope_yes_ratio (the ground truth's share of 'yes'), the model's own share of 'yes' answers
    (stats.MODEL_YES_RATIO): a model answering 'yes' every time shows 100, not lmms-eval's 50."""
    for task, values in metrics.items():
        if "pope_yes_ratio" in values:
            values[stats.MODEL_YES_RATIO] = stats.answer_yes_ratio([row for row in rows if row["task"] == task])


def intervals_of(rows: list[dict[str, Any]], metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Each task's 95% bootstrap interval (by image), sample and image counts for every metric it reports."""
    found = {}
    for task, names in metrics.items():
        picked = [row for row in rows if row["task"] == task]
        found[task] = {metric: stats.interval(picked, metric) for metric in names}
    return found


def qbench_commit() -> str | None:
    """The git commit of qbench's checkout (suffixed '+dirty' with local changes); None outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def sample_score(logged: dict[str, Any], metric: str) -> float:
    value = logged[metric]
    return float(value["score"] if isinstance(value, dict) else value)


def scored_rows(results: dict[str, Any], tasks: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Every sample once: the answer rows of all processes, with lmms-eval's per-sample score of the task's first
    metric and that metric's name. Each column has one type in every row: `question_id` a string (or null), `target`
    a list of answers."""
    answers = journal.read_rows(folder)
    rows = []
    for name, task in tasks.items():
        metric = task.config.metric_list[0]["metric"]
        for logged in sorted(results["samples"][name], key=lambda s: s["doc_id"]):
            row = answers[name, logged["doc_id"]]
            question, target = row["question_id"], row["target"]
            rows.append({**row, "question_id": None if question is None else str(question),
                         "target": target if isinstance(target, list) else [] if target is None else [target],
                         "image": row.get("image"), "metric": metric, "score": sample_score(logged, metric)})
    return rows


# --- running ----------------------------------------------------------------------------------------------------------
def answer_and_score(lm: QBenchLMM, prepared: Prepared, limit: int | None, folder: Path) -> dict[str, Any] | None:
    """lmms-eval's evaluation of the prepared tasks (results on rank 0). Global random seeds are left alone: the
    answers are greedy, and a caller in the middle of training keeps its random state."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    with muted(), naming_full_disk(folder / LMMS_EVAL_FILES):  # lmms-eval writes its files there as it scores
        return simple_evaluate(model=lm, tasks=list(prepared.tasks.values()), limit=limit, bootstrap_iters=0,
                               log_samples=True, task_manager=TaskManager(include_defaults=False, model_name="qbench"),
                               cli_args=argparse.Namespace(output_path=str(folder / LMMS_EVAL_FILES),
                                                           process_with_media=False),
                               datetime_str=datetime.now().strftime("%Y%m%d_%H%M%S"), random_seed=None,
                               numpy_random_seed=None, torch_random_seed=None,
                               distributed_executor_backend="torchrun")


def work_done(lm: QBenchLMM) -> tuple[int, float]:
    """Samples answered by the model and the longest time any process spent on them, over all processes."""
    work = [(lm.generated, lm.seconds)]
    if dist.is_initialized():
        work = [None] * dist.get_world_size()
        dist.all_gather_object(work, (lm.generated, lm.seconds))
    return sum(n for n, _ in work), max(s for _, s in work)


def timing(lm: QBenchLMM, wall: float) -> dict[str, float]:
    """Where this process's evaluation time went: lmms-eval's whole evaluation (`wall_s`: loading documents, prompts,
    answering, scoring), the engine answering, waiting for documents and images to be read (the rest of the reading
    overlaps the engine), and the share of the wall time spent outside the engine."""
    return {"wall_s": wall, "engine_s": lm.timing["engine"], "waiting_for_data_s": lm.timing["waiting"],
            "reading_s": lm.timing["reading"], "outside_engine_share": 1 - lm.timing["engine"] / wall if wall else None}


def summarize(vlm: VLM, prepared: Prepared, settings: dict[str, Any], results: dict[str, Any],
              rows: list[dict[str, Any]], work: tuple[int, float], batch_size: int, reused: int,
              started: str) -> dict[str, Any]:
    generated, seconds = work
    metrics = {name: metrics_of(results, name) for name in prepared.tasks}
    with_answer_yes_ratio(rows, metrics)
    return {
        "schema": SCHEMA, "model": settings["model"], "suite": prepared.suite.name, "spec": vlm.spec.to_dict(),
        "checkpoint": settings["checkpoint"], "metrics": metrics,
        "intervals": intervals_of(rows, metrics), "variants": settings["variants"],
        "qbench_commit": qbench_commit(),
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

    write_atomic(folder / "samples.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    write_atomic(folder / "lmms_eval_results.json", json.dumps(
        {k: v for k, v in results.items() if k != "samples"}, indent=2, default=handle_non_serializable))
    write_atomic(folder / "summary.json", json.dumps(summary, indent=2) + "\n")  # last: the run is complete
    journal.clear(folder)


def claim(output: Path, request: dict[str, Any], identity: dict[str, Any]) -> tuple[Path, FolderLock | None]:
    """The run folder, claimed by rank 0 (which holds its lock: None on the other ranks); a refusal stops all."""
    rank, _, _ = process_rank()
    outcome, lock = None, None
    if rank == 0:
        try:
            folder, lock = claim_folder(output, request, identity)
            outcome = str(folder)
        except (FolderBusy, ResumeRefused, UserError) as refused:
            outcome = refused
    outcome = from_rank0(outcome)
    if isinstance(outcome, Exception):
        raise outcome
    return Path(outcome), lock


@contextmanager
def prompted(vlm: VLM, variants: list[Variant]) -> Iterator[None]:
    """The VLM prompted as the variants ask (e.g. llava_prompt=vicuna_v1) for the time of a run; then as before."""
    own = vlm.spec
    prompt = prompt_variant(variants, own.prompt)
    vlm.spec, vlm.tokenized = dataclasses.replace(own, prompt=prompt), {}
    try:
        yield
    finally:
        vlm.spec, vlm.tokenized = own, {}


def execute(vlm: VLM, model: str, prepared: Prepared, checkpoint: dict[str, Any], output: str | Path,
            limit: int | None, batch_size: int, max_new_tokens: int,
            engine: str = "answering") -> tuple[dict[str, Any] | None, Path]:
    """Answer and score every task in a new or resumed run folder; rank 0 returns the summary (others None)."""
    rank, _, _ = process_rank()
    request = {"model": model, "suite": prepared.suite.name, "limit": limit,
               "variants": {v.option: v.value for v in prepared.variants}, "max_new_tokens": max_new_tokens,
               "dtype": str(vlm.dtype).removeprefix("torch.")}
    settings = {**request, "checkpoint": checkpoint, "data": prepared.data}
    folder, lock = claim(Path(output), request, {key: settings[key] for key in IDENTITY})
    try:
        lm = QBenchLMM(vlm=vlm, batch_size=batch_size, max_new_tokens=max_new_tokens,
                       journal=journal.Journal(folder, rank), engine=engine)
        reused = len(lm.journal.rows)
        evaluating = time.perf_counter()
        try:
            results = answer_and_score(lm, prepared, limit, folder)
        except KeyboardInterrupt:
            raise RunInterrupted(folder, len(journal.read_rows(folder))) from None
        work = work_done(lm)
        summary = None
        if rank == 0:
            rows = scored_rows(results, prepared.tasks, folder)
            started = json.loads((folder / SETTINGS).read_text())["started"]
            summary = summarize(vlm, prepared, settings, results, rows, work, batch_size, reused, started)
            summary["engine"] = lm.engine_name
            summary["timing"] = timing(lm, time.perf_counter() - evaluating)
            write_results(folder, summary, rows, results)
        barrier()
    finally:
        if lock is not None:
            lock.release()
    return summary, folder


def run(model: str, suite: str | None, limit: int | None = None, checkpoint: str | None = None,
        data_dir: str | Path = DEFAULT_DATA, output: str | Path = DEFAULT_OUTPUT, device: str | None = None,
        dtype: str | None = None, batch_size: int = 8, variants: list[str] | tuple[str, ...] = (),
        max_new_tokens: int = MAX_NEW_TOKENS, seed: int = SEED, engine: str = "answering",
        tasks: Sequence[str] = (), include_paths: Sequence[str | Path] = (),
        warn: Callable[[str], None] = lambda message: None) -> tuple[dict[str, Any] | None, Path]:
    """`qbench run`: check the device, weights, tokenizer and output folder, load the data (failing fast), then the
    model, then answer and score. Returns (summary on rank 0, else None; the run folder). Runs `suite` (a name or a
    suite YAML) or the `tasks` (names from the include paths, qbench's suites or lmms-eval). Random weights are drawn
    with `seed`; once the checks pass, `warn` hears it when a full-size preset is about to run on them."""
    from qbench.checkpoints import check_ready, load_vlm, resolve_source

    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
    source = resolve_source(model, checkpoint, seed)
    chosen = resolve_device(device)
    precision = resolve_dtype(dtype, chosen)
    check_ready(source)
    check_folder(data_dir, "--data-dir", "give a folder of datasets (or one to generate the mini datasets in)")
    check_caches()
    ensure_writable(output, "--output")
    said = random_weights_warning(source)
    if said and process_rank()[0] == 0:
        warn(said)
    init_distributed(chosen)
    prepared = prepare(suite, data_dir, variants, max_new_tokens, tasks, include_paths)
    step(f"loading {source.spec.name} ({source.weights}) on {chosen} in {dtype_name(precision)}")
    vlm = load_vlm(source, device=chosen, dtype=precision)
    with prompted(vlm, prepared.variants):
        return execute(vlm, source.spec.name, prepared, checkpoint_info(source.weights, seed), output, limit,
                       batch_size, max_new_tokens, engine)


def random_weights_warning(source: ModelSource) -> str | None:
    """What to say before a full-size preset runs on random weights (its answers are chance); None otherwise."""
    if not source.random or source.spec.name.startswith("tiny-"):
        return None
    why = "as asked (--checkpoint random)" if source.checkpoint == "random" else "since it has no published weights"
    return (f"{source.spec.name} runs on random weights (seed {source.seed}) {why}: its answers are chance and its "
            "scores mean nothing; give --checkpoint with trained weights to measure the model")


def evaluate(vlm: VLM, suite: str = "mini", limit: int | None = None, output: str | Path = DEFAULT_OUTPUT,
             data_dir: str | Path = DEFAULT_DATA, batch_size: int = 8, variants: list[str] | tuple[str, ...] = (),
             checkpoint: str | None = None) -> dict[str, Any] | None:
    """Evaluate a VLM already in memory (e.g. one being trained) on a suite, exactly as `qbench run` does, and
    return the run summary (schema qbench.run/1; None on ranks other than 0). The mini suite's data is generated
    under data_dir on first use. `checkpoint` records where the weights came from (e.g. a save_native folder);
    without it, the run is identified by the weights' own digest.
    The VLM is evaluated in eval mode and given back in the mode it came in; global random states are untouched.
    """
    check_caches()
    init_distributed(vlm.device)
    prepared = prepare(suite, data_dir, variants, MAX_NEW_TOKENS)
    info = checkpoint_info(checkpoint) if checkpoint else {"source": "in-memory", "sha256": weights_digest(vlm),
                                                           "seed": None}
    training = vlm.training
    vlm.eval()
    try:
        with prompted(vlm, prepared.variants):
            summary, _ = execute(vlm, vlm.spec.name, prepared, info, output, limit, batch_size, MAX_NEW_TOKENS)
    finally:
        vlm.train(training)
    return summary
