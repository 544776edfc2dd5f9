"""Read the result files a report is asked for (run summaries, speed sweeps, ablation tables, training runs) into
data frames.

What is read is a `Request`: a results folder (its runs/, speed/, ablation/ and train/), or for runs and speed
sweeps the folders given instead, only the files git tracks where asked (the project's published record: `make
report`), only the measurements of one device where asked. Run folders are read and checked by qbench.runs.

Every measurement carries what it measured: a run's row its model, its weights (a checkpoint's digest, or random
weights and their seed) and its device, so that rows differing in any of these never replace each other. Each run's
scores carry the 95% interval its summary records; a summary from before intervals gets it computed from its
samples.jsonl (qbench.stats), or none when that is absent.

A file that cannot be read, carries another schema version, lacks a field or holds a number that is not finite is
skipped with a `SkippedResult` warning naming it; the rest of the report is still built.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from qbench.inputs import UserError
from qbench.presets import ALIASES
from qbench.runs import SAMPLES, BadRun, Run, read_run, short


class SkippedResult(UserWarning):
    """A result file the report could not use; the message names the file and says why."""


class BadResult(ValueError):
    """Raised while reading one result file; turned into a SkippedResult warning."""


Row = dict[str, Any]


@dataclass(frozen=True)
class ResultKind:
    name: str
    pattern: str  # glob under the results folder
    schema: str  # the exact schema string the file must carry
    required: tuple[str, ...]  # top-level keys
    columns: tuple[str, ...]  # columns of the data frame, so that an empty one still has them
    rows: Callable[[dict[str, Any], str], list[Row]]


@dataclass(frozen=True)
class Request:
    """What a report reads: a results folder, or instead of its runs/ and speed/ the folders given (each a run or
    speed folder, or a folder of them); only files git tracks (`tracked`); only measurements of one `device` (cpu,
    cuda for any GPU, or part of a GPU's name). report.json records it beside the report it made."""

    results: str = "results"
    runs: tuple[str, ...] = ()
    speed: tuple[str, ...] = ()
    device: str | None = None
    tracked: bool = False

    @property
    def root(self) -> Path:
        return Path(self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"results": self.results, "runs": list(self.runs), "speed": list(self.speed), "device": self.device,
                "tracked": self.tracked}

    def files(self, kind: ResultKind) -> list[Path]:
        """The files of one kind to read: under the given folders, else matching the kind's pattern under the
        results folder; only tracked ones where asked."""
        given = {"runs": self.runs, "speed": self.speed}.get(kind.name.split("_")[0], ())
        name = kind.pattern.rsplit("/", 1)[-1]
        found = sorted(self.root.glob(kind.pattern)) if not given else [
            path for folder in given for path in in_folder(Path(folder), name, f"--{kind.name}")]
        if self.tracked:
            tracked = tracked_files(self.root)
            found = [path for path in found if path.resolve() in tracked]
        return found


def in_folder(folder: Path, name: str, option: str) -> list[Path]:
    """`folder/name`, or `name` in each folder inside `folder`; a UserError naming the option if there is none."""
    if (folder / name).is_file():
        return [folder / name]
    found = sorted(folder.glob(f"*/{name}"))
    if not found:
        raise UserError(f"{option} {folder}: no {name} there nor in the folders inside it; give a folder that "
                        "qbench wrote, or folders of them")
    return found


def tracked_files(root: Path) -> set[Path]:
    """The files under `root` that git tracks (resolved paths); a UserError outside a git checkout."""
    import subprocess

    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise UserError(f"--tracked: {root} is not inside a git checkout, so no file there is tracked") from None
    return {(root / os.fsdecode(name)).resolve() for name in listed.split(b"\0") if name}


def device_matches(device: str, wanted: str | None) -> bool:
    """Whether a measurement's device ('cpu' or a GPU's name) is the one asked: cpu, cuda or gpu (any GPU), or
    part of a GPU's name (case aside)."""
    if wanted is None:
        return True
    wanted = wanted.lower()
    if wanted == "cpu" or device == "cpu":
        return wanted == device.lower()
    return wanted in ("cuda", "gpu") or wanted in device.lower()


def device_of(summary: dict[str, Any]) -> str:
    """A run's device as the report shows it: 'cpu', or the GPU's name ('cuda:0 (NVIDIA H100 ...)' -> its name)."""
    device = str(summary.get("device") or "unknown")
    return device.partition("(")[2].rstrip(")") or device if device.startswith("cuda") else device


def weights_of(checkpoint: Any) -> str:
    """What a run answered with, in a few words: 'random, seed 0', or a checkpoint's name and digest."""
    checkpoint = checkpoint if isinstance(checkpoint, dict) else {}
    source, digest = str(checkpoint.get("source") or "unknown"), checkpoint.get("sha256")
    if source == "random":
        return f"random, seed {checkpoint.get('seed') if checkpoint.get('seed') is not None else 0}"
    name = Path(source.partition(":")[2] or source).name if source != "in-memory" else source
    return f"{name} {digest[:8]}" if digest else name


@dataclass
class Results:
    root: Path
    frames: dict[str, pd.DataFrame]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file relative to root, reason)
    read: dict[str, Run] = field(default_factory=dict)  # source of a run's summary -> the run, read and checked
    request: Request = field(default_factory=Request)

    @property
    def runs(self) -> pd.DataFrame:
        return self.frames["runs"]

    def on(self, keep: Callable[[str], bool]) -> Results:
        """These results with only the measurements (runs, speed rows, trainings) whose device `keep` accepts."""
        frames = {kind: frame[frame[DEVICE_COLUMNS[kind]].astype(str).map(keep).astype(bool)]
                  if kind in DEVICE_COLUMNS else frame for kind, frame in self.frames.items()}
        return Results(self.root, frames, self.skipped, self.read, self.request)

    @property
    def speed(self) -> pd.DataFrame:
        return self.frames["speed"]

    @property
    def ablation(self) -> pd.DataFrame:
        return self.frames["ablation"]

    @property
    def training(self) -> pd.DataFrame:
        return self.frames["training"]

    @property
    def ablation_differences(self) -> pd.DataFrame:
        return self.frames["ablation_differences"]


def canonical_model(name: str) -> str:
    """Aliases become preset names (`cobra` -> `cobra-3b`); checkpoint paths become their folder name."""
    name = ALIASES.get(name, name)
    return Path(name).name if "/" in name else name


def number(value: Any, what: str) -> float:
    """A finite float from a JSON number or null (NaN); anything else (inf, a number too large) is a BadResult."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadResult(f"{what} is {short(value)}, not a number")
    try:
        found = float(value)
    except OverflowError:
        raise BadResult(f"{what} is too large to be a number ({len(str(value))} digits)") from None
    if not math.isfinite(found):
        raise BadResult(f"{what} is {value!r}, not a finite number")
    return found


def text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadResult(f"{what} is {short(value)}, not a name")
    return value


def field_of(row: dict[str, Any], key: str, where: str) -> Any:
    if key not in row:
        raise BadResult(f"{where} has no {key!r}")
    return row[key]


def run_rows(doc: dict[str, Any], source: str) -> list[Row]:
    """One row per (task, metric) of a `qbench run` summary (checked by qbench.runs.read_summary)."""
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    metrics = doc["metrics"]
    n_samples = doc.get("n_samples") or {}
    intervals = doc.get("intervals") or {}
    rows = []
    for task, values in sorted(metrics.items()):
        for metric, value in sorted(values.items()):
            metric = metric.split(",")[0]  # lmms-eval's "exact_match,none" -> "exact_match"
            if metric.endswith("_stderr") and not isinstance(value, (int, float)):
                continue  # lmms-eval writes "N/A" for a standard error it did not compute
            ci = (intervals.get(task) or {}).get(metric, {}).get("ci") or [None, None]
            rows.append({
                "model": canonical_model(text(doc["model"], "'model'")), "suite": text(doc["suite"], "'suite'"),
                "weights": weights_of(doc.get("checkpoint")), "device": device_of(doc),
                "task": task, "metric": metric, "value": number(value, f"metrics.{task}.{metric}"),
                "n_samples": number(n_samples.get(task), f"n_samples.{task}"),
                "ci_lo": number(ci[0], f"intervals.{task}.{metric}"), "ci_hi": number(ci[1], f"intervals.{task}.{metric}"),
                "projector": spec.get("projector", {}).get("kind"), "backbone": spec.get("backbone", {}).get("kind"),
                "limit": doc.get("limit"), "finished": str(doc.get("finished") or doc.get("started") or ""),
                "source": source,
            })
    return rows


SPEED_NUMBERS = ("visual_tokens", "images", "batch", "largest_batch", "new_tokens", "prompt_tokens", "vision_ms",
                 "projector_ms", "prefill_ms", "ttft_ms", "decode_tokens_per_s", "e2e_tokens_per_s", "peak_mem_gib",
                 "weights_gib", "state_gib", "state_alloc_gib", "roofline_tokens_per_s", "roofline_share")


def object_rows(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for each entry of the document's 'rows' list; BadResult unless each is an object."""
    if not isinstance(doc["rows"], list):
        raise BadResult("'rows' is not a list")
    for i, row in enumerate(doc["rows"]):
        if not isinstance(row, dict):
            raise BadResult(f"rows[{i}] is not an object")
        yield f"rows[{i}]", row


def speed_rows(doc: dict[str, Any], source: str) -> list[Row]:
    """One row per measured configuration of a speed sweep, with the GPU it ran on."""
    environment = doc.get("environment") or {}
    rows = []
    for where, row in object_rows(doc):
        rows.append({
            "model": canonical_model(text(field_of(row, "model", where), f"{where}.model")),
            "backbone": row.get("backbone"), "projector": row.get("projector"),
            "engine": text(field_of(row, "engine", where), f"{where}.engine"),
            "status": text(field_of(row, "status", where), f"{where}.status"),
            **{key: number(row.get(key), f"{where}.{key}") for key in SPEED_NUMBERS},
            "batch_search": row.get("batch_search"),  # None: the batch was asked, not searched
            "checkpoint": row.get("checkpoint") or "random",  # what was timed (rows from before it: random)
            "gpu": str(environment.get("gpu") or row.get("device") or "unknown"),
            "created": str(doc.get("created") or ""), "source": source,
        })
        for key in ("visual_tokens", "batch"):
            if math.isnan(rows[-1][key]):
                raise BadResult(f"{where} has no {key!r}")
        if math.isnan(rows[-1]["images"]):
            rows[-1]["images"] = 1.0  # sweeps from before multi-image prompts
    return rows


def fill_intervals(runs: pd.DataFrame, read: dict[str, Run]) -> pd.DataFrame:
    """Intervals of the runs whose summaries predate them, from their samples (left empty without any)."""
    from qbench import stats

    runs = runs.copy()
    for source in sorted(set(runs.loc[runs["ci_lo"].isna(), "source"])):
        samples = read[source].tasks()
        for index in runs.index[(runs["source"] == source) & runs["ci_lo"].isna()]:
            task, metric = runs.at[index, "task"], runs.at[index, "metric"]
            if samples.get(task) and not metric.endswith("_stderr"):
                runs.loc[index, ["ci_lo", "ci_hi"]] = stats.interval(samples[task], metric)["ci"]
    return runs


def ablation_rows(doc: dict[str, Any], source: str) -> list[Row]:
    """One row per (projector, backbone, task) cell of an ablation table: the score (the mean over seeds), the spread
    over seeds and the 95% interval where the ablation has them."""
    rows = []
    for where, row in object_rows(doc):
        queries = row.get("queries")
        rows.append({
            "name": text(doc["name"], "'name'"), "combo": row.get("combo"),
            "projector": text(field_of(row, "projector", where), f"{where}.projector"),
            "backbone": text(field_of(row, "backbone", where), f"{where}.backbone"),
            "queries": None if queries is None else int(number(queries, f"{where}.queries")),
            "visual_tokens": number(row.get("visual_tokens"), f"{where}.visual_tokens"),
            "task": text(field_of(row, "task", where), f"{where}.task"),
            "metric": text(field_of(row, "metric", where), f"{where}.metric"),
            "value": number(field_of(row, "value", where), f"{where}.value"),
            "spread": number(row.get("spread"), f"{where}.spread"),
            "ci_lo": number(row.get("ci_lo"), f"{where}.ci_lo"), "ci_hi": number(row.get("ci_hi"), f"{where}.ci_hi"),
            "seeds": number(row.get("seeds", 1), f"{where}.seeds"),
            "chance": number(row.get("chance"), f"{where}.chance"),
            "decode_tokens_per_s": number(row.get("decode_tokens_per_s"), f"{where}.decode_tokens_per_s"),
            "source": source,
        })
    return rows


DIFFERENCE_COLUMNS = ("name", "task", "factor", "a", "b", "metric", "n", "difference", "ci_lo", "ci_hi", "p",
                      "seeds", "survives", "source")


def difference_rows(doc: dict[str, Any], source: str) -> list[Row]:
    """One row per compared pair of an ablation (`differences`, written by ablations with seeds; none before)."""
    rows = []
    for i, row in enumerate(doc.get("differences") or []):
        where = f"differences[{i}]"
        rows.append({"name": text(doc["name"], "'name'"), "task": text(row["task"], f"{where}.task"),
                     "factor": row["factor"], "a": text(row["a"], f"{where}.a"), "b": text(row["b"], f"{where}.b"),
                     "metric": row["metric"], "n": number(row["n"], f"{where}.n"),
                     **{key: number(row[key], f"{where}.{key}") for key in ("difference", "ci_lo", "ci_hi", "p")},
                     "seeds": len(row["seed_differences"]), "survives": bool(row["survives"]), "source": source})
    return rows


TRAINING_COLUMNS = ("model", "projector", "backbone", "gpu", "processes", "sharding", "batch", "steps_done", "steps",
                    "status", "peak_gpu_memory_gib", "median_step_seconds", "source")


def training_rows(doc: dict[str, Any], source: str) -> list[Row]:
    """One row per `qbench train` run (its train.json): how it was spread, what it held, how fast it stepped."""
    spec, config = doc["identity"]["spec"], doc["identity"]["config"]
    environment = doc.get("environment") or {}
    status = "finished" if doc["finished"] else doc.get("error") or "stopped (resumable)"
    return [{
        "model": text(spec["name"], "identity.spec.name"), "projector": spec["projector"]["kind"],
        "backbone": spec["backbone"]["kind"], "gpu": str(environment.get("gpu") or "cpu"),
        "processes": number(doc.get("processes", 1), "processes"), "sharding": str(doc.get("sharding") or "ddp"),
        "batch": number(config["batch_size"], "identity.config.batch_size"),
        "steps_done": number(doc["steps_done"], "steps_done"), "steps": number(config["steps"], "config.steps"),
        "status": status, "peak_gpu_memory_gib": number(doc.get("peak_gpu_memory_gib"), "peak_gpu_memory_gib"),
        "median_step_seconds": number(doc.get("median_step_seconds"), "median_step_seconds"), "source": source,
    }]


KINDS: dict[str, ResultKind] = {kind.name: kind for kind in (
    ResultKind("runs", "runs/*/summary.json", "qbench.run/1", ("model", "suite", "spec", "metrics"),
               ("model", "suite", "weights", "device", "task", "metric", "value", "n_samples", "ci_lo", "ci_hi",
                "projector", "backbone", "limit", "finished", "source"), run_rows),
    ResultKind("speed", "speed/*/speed.json", "qbench.speed/1", ("rows",),
               ("model", "backbone", "projector", "engine", "status", *SPEED_NUMBERS, "batch_search", "checkpoint",
                "gpu", "created", "source"),
               speed_rows),
    ResultKind("ablation", "ablation/*/ablation.json", "qbench.ablation/1", ("name", "rows"),
               ("name", "combo", "projector", "backbone", "queries", "visual_tokens", "task", "metric", "value",
                "spread",
                "ci_lo", "ci_hi", "seeds", "chance", "decode_tokens_per_s", "source"), ablation_rows),
    ResultKind("ablation_differences", "ablation/*/ablation.json", "qbench.ablation/1", ("name", "rows"),
               DIFFERENCE_COLUMNS, difference_rows),
    ResultKind("training", "train/*/*.json", "qbench.train/1", ("identity", "finished", "steps_done"),
               TRAINING_COLUMNS, training_rows),
)}


def read_result(path: Path, kind: ResultKind, source: str) -> list[Row]:
    """The rows of one result file, or a BadResult saying why it cannot be used."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:  # ValueError: not JSON, or a number too long
        raise BadResult(f"not readable JSON ({error})") from error
    if not isinstance(doc, dict):
        raise BadResult("not a JSON object")
    if doc.get("schema") != kind.schema:
        raise BadResult(f"schema {short(doc.get('schema'))}, expected {kind.schema!r}")
    missing = [key for key in kind.required if key not in doc]
    if missing:
        raise BadResult(f"missing {', '.join(map(repr, missing))}")
    return shaped(kind.rows, doc, source)


def shaped(rows_of: Callable[[dict[str, Any], str], list[Row]], doc: dict[str, Any], source: str) -> list[Row]:
    """rows_of(doc, source), a field of the wrong shape turned into a BadResult."""
    try:
        return rows_of(doc, source)
    except BadResult:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as error:
        raise BadResult(f"malformed ({type(error).__name__}: {short(str(error))})") from error


def source_name(path: Path, root: Path) -> str:
    """A result file's name as the report shows it: relative to the results folder where it lies inside it (else
    as given), bytes that are not UTF-8 as escapes."""
    try:
        name = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        name = path.as_posix()
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def check_name(path: Path) -> None:
    """BadResult for a name that is not valid UTF-8: it could not be written into the report's files."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise BadResult("its name is not valid UTF-8; rename it") from None


def read_runs(request: Request, skip: Callable[[str, str], None]) -> tuple[list[Row], dict[str, Run]]:
    """The asked run folders, read and checked by qbench.runs (samples.jsonl where there is one)."""
    rows: list[Row] = []
    read: dict[str, Run] = {}
    for path in request.files(KINDS["runs"]):
        source = source_name(path, request.root)
        try:
            check_name(path)
            run = read_run(path.parent, samples=(path.parent / SAMPLES).exists())
            rows += shaped(run_rows, run.summary, source)
        except BadResult as error:
            skip(source, str(error))
        except BadRun as error:
            skip(source_name(error.path, request.root), error.problem)
        else:
            read[source] = run
    return rows, read


DEVICE_COLUMNS = {"runs": "device", "speed": "gpu", "training": "gpu"}  # where each kind names its device


def collect(request: Request | str | Path) -> Results:
    """The asked results (a Request, or a results folder), one data frame per kind; broken or older files are
    skipped with a warning."""
    request = request if isinstance(request, Request) else Request(str(request))
    if not request.root.is_dir():
        raise UserError(f"results folder {request.root} does not exist; give --results a folder of results")
    frames, skipped = {}, []

    def skip(source: str, reason: str) -> None:
        if (source, reason) not in skipped:  # a file that two kinds read is named once
            skipped.append((source, reason))
            warnings.warn(f"skipped {source}: {reason}", SkippedResult, stacklevel=3)

    run_frame, read = read_runs(request, skip)
    for kind in KINDS.values():
        if kind.name == "runs":
            frames[kind.name] = pd.DataFrame(run_frame, columns=list(kind.columns))
            continue
        rows: list[Row] = []
        for path in request.files(kind):
            source = source_name(path, request.root)
            try:
                check_name(path)
                rows += read_result(path, kind, source)
            except BadResult as error:
                skip(source, str(error))
        frames[kind.name] = pd.DataFrame(rows, columns=list(kind.columns))
    frames["runs"] = fill_intervals(frames["runs"], read)
    return Results(request.root, frames, skipped, read, request).on(lambda d: device_matches(d, request.device))
