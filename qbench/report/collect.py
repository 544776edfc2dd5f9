"""Read every result file under results/ (run summaries, speed sweeps, ablation tables, training runs) into data
frames.

Each run's scores carry the 95% interval its summary records; a summary from before intervals gets it computed from
its samples.jsonl (qbench.stats), or none when that is absent.

A file that cannot be read, carries another schema version or lacks a field is skipped with a
`SkippedResult` warning naming it; the rest of the report is still built.
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


@dataclass
class Results:
    root: Path
    frames: dict[str, pd.DataFrame]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file relative to root, reason)
    read: dict[str, Run] = field(default_factory=dict)  # source of a run's summary -> the run, read and checked

    @property
    def runs(self) -> pd.DataFrame:
        return self.frames["runs"]

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
            "name": text(doc["name"], "'name'"),
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
               ("model", "suite", "task", "metric", "value", "n_samples", "ci_lo", "ci_hi", "projector", "backbone",
                "limit", "finished", "source"), run_rows),
    ResultKind("speed", "speed/*/speed.json", "qbench.speed/1", ("rows",),
               ("model", "backbone", "projector", "engine", "status", *SPEED_NUMBERS, "batch_search", "gpu", "created",
                "source"),
               speed_rows),
    ResultKind("ablation", "ablation/*/ablation.json", "qbench.ablation/1", ("name", "rows"),
               ("name", "projector", "backbone", "queries", "visual_tokens", "task", "metric", "value", "spread",
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
    """A result file's name relative to the results folder, as text (bytes that are not UTF-8 as escapes)."""
    return os.fsencode(path.relative_to(root).as_posix()).decode("utf-8", "backslashreplace")


def check_name(path: Path, root: Path) -> None:
    """BadResult for a name that is not valid UTF-8: it could not be written into the report's files."""
    if source_name(path, root) != path.relative_to(root).as_posix():
        raise BadResult("its name is not valid UTF-8; rename it")


def read_runs(root: Path, skip: Callable[[str, str], None]) -> tuple[list[Row], dict[str, Run]]:
    """Every run folder under root/runs, read and checked by qbench.runs (samples.jsonl where there is one)."""
    rows: list[Row] = []
    read: dict[str, Run] = {}
    for path in sorted(root.glob(KINDS["runs"].pattern)):
        source = source_name(path, root)
        try:
            check_name(path, root)
            run = read_run(path.parent, samples=(path.parent / SAMPLES).exists())
            rows += shaped(run_rows, run.summary, source)
        except BadResult as error:
            skip(source, str(error))
        except BadRun as error:
            skip(source_name(error.path, root), error.problem)
        else:
            read[source] = run
    return rows, read


def collect(root: str | Path) -> Results:
    """Every result under `root`, one data frame per kind; broken or older files are skipped with a warning."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    frames, skipped = {}, []

    def skip(source: str, reason: str) -> None:
        if (source, reason) not in skipped:  # a file that two kinds read is named once
            skipped.append((source, reason))
            warnings.warn(f"skipped {source}: {reason}", SkippedResult, stacklevel=3)

    run_frame, read = read_runs(root, skip)
    for kind in KINDS.values():
        if kind.name == "runs":
            frames[kind.name] = pd.DataFrame(run_frame, columns=list(kind.columns))
            continue
        rows: list[Row] = []
        for path in sorted(root.glob(kind.pattern)):
            source = source_name(path, root)
            try:
                check_name(path, root)
                rows += read_result(path, kind, source)
            except BadResult as error:
                skip(source, str(error))
        frames[kind.name] = pd.DataFrame(rows, columns=list(kind.columns))
    frames["runs"] = fill_intervals(frames["runs"], read)
    return Results(root, frames, skipped, read)
