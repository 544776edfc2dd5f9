"""The sweep: every model x visual token count x images per prompt x engine x batch, one row each; an out-of-memory
point is a row marked OOM and the sweep goes on. A batch asked as `max` is the largest that fits, found by trying
(qbench.speed.largest_batch), every try recorded in speed.json's "searches"."""

from __future__ import annotations

import dataclasses
import functools
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from qbench.backbones import BACKBONES
from qbench.engine import ENGINES
from qbench.folder import Interrupted, hold
from qbench.inputs import ensure_writable, resolve_dtype
from qbench.presets import at_visual_tokens, get_preset
from qbench.speed.environment import device_slug, environment
from qbench.speed.largest_batch import (
    BATCH_LIMIT,
    LARGEST,
    MEASURE_TOKENS,
    Search,
    largest_batch,
)
from qbench.speed.point import (
    Point,
    measure_engine,
    measure_reference,
    peak_gib,
    reset_peak,
    warm_decoder,
)
from qbench.speed.reference import REFERENCE_ENGINE
from qbench.speed.results import SpeedResults
from qbench.speed.roofline import copy_bandwidth_gbs, parameter_bytes, roofline
from qbench.verbosity import step
from qbench.vlm import VLM, visual_tokens_of

SWEEP_ENGINES = [*ENGINES.names(), REFERENCE_ENGINE]


def default_engines(device: str) -> list[str]:
    """The engines that run on a device: every qbench engine on a GPU, the eager one elsewhere."""
    return ENGINES.names() if torch.device(device).type == "cuda" else ["eager"]


@dataclass(frozen=True)
class SweepConfig:
    models: list[str]
    tokens: list[int | None]  # None: the model's own visual token count (per image)
    batches: list[int | str]  # sizes, or LARGEST
    engines: list[str]
    new_tokens: int = 256
    prompt_tokens: int = 16
    device: str = "cuda"
    dtype: str = "bf16"
    repeats: int = 3
    checkpoint: str | None = None
    images: tuple[int, ...] = (1,)  # images per prompt
    batch_limit: int = BATCH_LIMIT  # the largest-batch search tries no larger batch
    measure_tokens: int = MEASURE_TOKENS  # ... and prefills all of a largest batch only up to this many prompt tokens

    def validate(self) -> None:
        """Refuse what cannot run, before anything is built."""
        for model in self.models:
            spec = get_preset(model)
            for tokens in self.tokens:
                if tokens is not None:
                    at_visual_tokens(spec, tokens)
        unknown = [engine for engine in self.engines if engine not in SWEEP_ENGINES]
        if unknown:
            raise ValueError(f"unknown engine {unknown[0]!r}; choose from: {', '.join(SWEEP_ENGINES)}")
        if self.device_type != "cuda" and any(engine != "eager" for engine in self.engines):
            raise ValueError(f"engines {', '.join(e for e in self.engines if e != 'eager')} capture CUDA graphs and "
                             f"need --device cuda; on {self.device_type!r} use --engine eager")
        resolve_dtype(self.dtype)
        sizes = [batch for batch in self.batches if batch != LARGEST]
        if min(sizes, default=1) < 1 or self.new_tokens < 1 or self.repeats < 1 or self.prompt_tokens < 0:
            raise ValueError("batch sizes, --new-tokens and --repeats must be at least 1, --prompt-tokens at least 0")
        if min(self.images) < 1 or self.batch_limit < 1 or self.measure_tokens < 1:
            raise ValueError("--images, --batch-limit and --measure-tokens must be at least 1")
        if LARGEST in self.batches and REFERENCE_ENGINE in self.engines:
            raise ValueError(f"--batch {LARGEST} searches with qbench's engines; {REFERENCE_ENGINE} has its own state")
        if self.checkpoint and (len(self.models) != 1 or self.tokens != [None]):
            raise ValueError("--checkpoint times one model at its own visual token count: give one --model and no --tokens")
        if self.checkpoint:
            from qbench.checkpoints import check_ready, resolve_source

            check_ready(resolve_source(self.models[0], self.checkpoint))

    def command(self, output: str | None = None) -> str:
        """The `qbench speed` command line that runs this sweep, every setting spelled out."""
        import shlex

        tokens = ",".join(str(t) for t in self.tokens if t is not None)
        args = ["--model", ",".join(self.models), *(["--tokens", tokens] if tokens else []),
                "--images", ",".join(map(str, self.images)), "--batch-size", ",".join(map(str, self.batches)),
                *(["--batch-limit", str(self.batch_limit), "--measure-tokens", str(self.measure_tokens)]
                  if LARGEST in self.batches else []),
                "--engine", ",".join(self.engines),
                "--new-tokens", str(self.new_tokens), "--prompt-tokens", str(self.prompt_tokens),
                "--device", self.device, "--dtype", self.dtype, "--repeats", str(self.repeats),
                *(["--checkpoint", self.checkpoint] if self.checkpoint else []), *(["--output", output] if output else [])]
        return shlex.join(["qbench", "speed", *args])

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    def points(self) -> int:
        return sum(1 for _ in points_of(self))


def is_oom(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's refusal."""
    return isinstance(error, torch.OutOfMemoryError) or any(
        sign in str(error) for sign in ("can't allocate memory", "CUBLAS_STATUS_ALLOC_FAILED"))


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build(config: SweepConfig, model: str, tokens: int | None) -> VLM:
    from qbench.vlm import build_vlm

    if config.checkpoint:
        from qbench.checkpoints import load_vlm

        return load_vlm(model, config.checkpoint, device=config.device, dtype=config.dtype).eval()
    spec = get_preset(model)
    spec = spec if tokens is None else at_visual_tokens(spec, tokens)
    torch.manual_seed(0)
    return build_vlm(spec, device=config.device, dtype=resolve_dtype(config.dtype), tokenizer=False).eval()


def measure(vlm: VLM, point: Point, bandwidth: float | None) -> dict:
    """The measured fields of one row, the roofline worked out from its weights and state."""
    values = measure_reference(vlm, point) if point.engine == REFERENCE_ENGINE else measure_engine(vlm, point)
    state_bytes = values.pop("state_bytes")  # analytic: the state's tensors; state_alloc_gib: what the allocator gave
    limits = roofline(point.batch, parameter_bytes(vlm.backbone), state_bytes, bandwidth)
    share = (values["decode_tokens_per_s"] / limits["roofline_tokens_per_s"]
             if limits["roofline_tokens_per_s"] and values["decode_tokens_per_s"] else None)
    return {**values, **limits, "state_gib": state_bytes / 2**30, "roofline_share": share, "status": "ok", "error": None}


EMPTY = {"kernel_path": None, "vision_ms": None, "projector_ms": None, "prefill_ms": None, "ttft_ms": None,
         "decode_tokens_per_s": None, "e2e_tokens_per_s": None, "peak_mem_gib": None, "weights_gib": None,
         "state_gib": None, "state_alloc_gib": None, "bytes_per_token": None, "roofline_tokens_per_s": None,
         "roofline_share": None}


def failed(error: BaseException) -> dict:
    status = "oom" if is_oom(error) else "error"
    return {**EMPTY, "status": status, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}


def points_of(config: SweepConfig) -> Iterator[tuple[str, int | None, Point]]:
    """Every (model, tokens, images, engine, batch); mamba_ssm-cg only for the models whose LLM mamba_ssm can run.
    A point's batch 0 stands for LARGEST."""
    for model in config.models:
        for tokens in config.tokens:
            for images in config.images:
                for engine in config.engines:
                    if engine == REFERENCE_ENGINE and BACKBONES[get_preset(model).backbone.kind].mamba_ssm_mixer is None:
                        continue
                    for batch in config.batches:
                        yield model, tokens, Point(0 if batch == LARGEST else batch, engine, config.new_tokens,
                                                   config.prompt_tokens, config.repeats, images)


def run_sweep(config: SweepConfig, out_dir: Path | None, command: str,
              on_row: Callable[[dict], None] = lambda row: None,
              on_try: Callable[[dict], None] = lambda attempt: None) -> SpeedResults:
    """Measure every point, writing speed.json/speed.csv after each, holding the folder's lock (FolderBusy if
    another process writes it); `on_row` sees each row as it lands, `on_try` each batch a largest-batch search
    tries. Ctrl-C: Interrupted, saying how many rows were kept."""
    config.validate()
    device = torch.device(config.device)
    env = environment(device)
    bandwidth = copy_bandwidth_gbs(device)
    out_dir = ensure_writable(out_dir or default_out_dir(env), "--output")
    with hold(out_dir, "give another --output"):
        results = SpeedResults(out_dir, command, env, bandwidth)
        try:
            measure_all(config, results, bandwidth, on_row, on_try)
        except KeyboardInterrupt:
            raise Interrupted(f"{len(results.rows)} rows kept in {out_dir / 'speed.json'}") from None
    return results


def measure_all(config: SweepConfig, results: SpeedResults, bandwidth: float | None,
                on_row: Callable[[dict], None], on_try: Callable[[dict], None]) -> None:
    """Every point of the sweep not yet in `results`, each row added (and written) as it is measured."""
    built: tuple[tuple[str, int | None], VLM | BaseException] | None = None
    for model, tokens, point in points_of(config):
        spec = get_preset(model) if tokens is None else at_visual_tokens(get_preset(model), tokens)
        row = {"model": get_preset(model).name, "backbone": spec.backbone.kind, "projector": spec.projector.kind,
               "visual_tokens": point.images * (tokens or visual_tokens_of(spec)), "images": point.images,
               "batch": point.batch or LARGEST, "batch_search": None, "largest_batch": None, "engine": point.engine,
               "new_tokens": point.new_tokens, "prompt_tokens": point.prompt_tokens, "dtype": config.dtype,
               "device": config.device, "repeats": point.repeats, "checkpoint": config.checkpoint}
        if results.has(row):
            on_row(row | {"status": "kept"})
            continue
        if built is None or built[0] != (model, tokens):
            vlm = built = None  # the last model's memory is freed before the next is built and measured
            free_memory()
            step(f"building {row['model']} at {row['visual_tokens']} visual tokens "
                 f"({config.checkpoint or 'random weights'}, {config.dtype} on {config.device})")
            built = ((model, tokens), safely(functools.partial(build, config, model, tokens)))
        vlm = built[1]
        if isinstance(vlm, BaseException):
            row |= failed(vlm) | ({} if point.batch else {"batch": 1, "batch_search": "largest", "largest_batch": 0})
        else:
            step(f"timing {row['model']} batch {row['batch']} {point.engine}: a warm-up and {point.repeats} "
                 f"repeat(s) of {point.new_tokens} new tokens")
            if point.batch:
                row |= run_point(vlm, point, bandwidth)
            else:
                search = search_largest(vlm, point, config.batch_limit, lambda attempt: on_try(row | attempt))
                measured, at = run_largest(vlm, point, search, config.measure_tokens, bandwidth)
                results.add_search({key: row[key] for key in SEARCH_KEYS} | search_record(search, at, vlm))
                row |= measured
        results.add(row)
        on_row(row)


SEARCH_KEYS = ["model", "visual_tokens", "images", "engine", "new_tokens", "prompt_tokens", "dtype", "device"]


def search_largest(vlm: VLM, point: Point, limit: int, on_try: Callable[[dict], None]) -> Search:
    """The largest batch of `point` that fits, each try a warm-up pass whose memory is freed after it."""

    def attempt(batch: int) -> dict:
        reset_peak(vlm.device)
        started = time.perf_counter()
        peak = safely(functools.partial(warm_peak, vlm, dataclasses.replace(point, batch=batch)))
        free_memory()
        result = {"status": "ok", "error": None, "peak_mem_gib": peak, "seconds": time.perf_counter() - started}
        if isinstance(peak, BaseException):
            result |= {key: failed(peak)[key] for key in ("status", "error")} | {"peak_mem_gib": None}
        on_try(result | {"batch": batch})
        return result

    return largest_batch(attempt, limit)


def warm_peak(vlm: VLM, point: Point) -> float | None:
    warm_decoder(vlm, point)
    return peak_gib(vlm.device)


def search_record(search: Search, measured: Point | None, vlm: VLM) -> dict:
    """What speed.json keeps of a search: every try, the largest batch, the batch measured and how many of its
    prompts were prefilled."""
    prefilled = measured and (measured.batch if measured.prefill_all else measured.groups(vlm)[0][1])
    return {"limit": search.cap, "largest": search.largest, "at_limit": search.capped,
            "measured_at": measured and measured.batch, "prefilled": prefilled, "tries": search.tries}


MEASURE_FALLBACKS = 2  # a largest batch whose whole measured pass runs out of memory: the next smaller tries that fit


def run_largest(vlm: VLM, point: Point, search: Search, measure_tokens: int,
                bandwidth: float | None) -> tuple[dict, Point | None]:
    """The row of a LARGEST point and the point measured: at the largest batch that fits (its prompts all
    prefilled, or, beyond `measure_tokens`, one group prefilled and copied). A try's warm-up prefills one group only:
    where the whole pass then runs out of memory, the next smaller batches that fit are measured instead. Where not
    even one sequence fits: the failure, at batch 1."""
    if not search.largest:
        return {**EMPTY, "status": search.failure["status"], "error": search.failure["error"], "batch": 1,
                "batch_search": "largest", "largest_batch": 0}, None
    found = "limit" if search.capped else "largest"  # limit: the search's largest try fit, more may
    fitted = sorted({t["batch"] for t in search.tries if t["status"] == "ok"}, reverse=True)
    for batch in fitted[: 1 + MEASURE_FALLBACKS]:
        measured = dataclasses.replace(point, batch=batch, prefill_all=batch * point.prompt_length(vlm) <= measure_tokens)
        row = run_point(vlm, measured, bandwidth)
        if row["status"] != "oom":
            break
    return row | {"batch": measured.batch, "largest_batch": search.largest,
                  "batch_search": found if measured.prefill_all else f"{found}, states copied"}, measured


def run_point(vlm: VLM, point: Point, bandwidth: float | None) -> dict:
    result = safely(functools.partial(measure, vlm, point, bandwidth))
    free_memory()
    return failed(result) if isinstance(result, BaseException) else result


def safely(work: Callable[[], object]) -> object:
    """The result of `work`, or the out-of-memory/runtime error it raised (so the sweep can go on)."""
    try:
        return work()
    except (RuntimeError, ValueError, ImportError) as error:  # torch.OutOfMemoryError is a RuntimeError
        error.__traceback__ = None  # drop the frames that hold tensors
        return error


def default_out_dir(env: dict) -> Path:
    import datetime

    return Path("results") / "speed" / f"{device_slug(env)}_{datetime.date.today().isoformat()}"
