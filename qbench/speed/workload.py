"""The answering workload: a request stream shaped like the `vqa` suite, answered by the answering engine and by
today's path (`VLM.generate`, batches in stream order) in the same run, with random weights and no datasets.

Each dataset of the suite appears with its share of the suite's questions, its questions per image, lmms-eval's
prompt around the question, and answers of 1-3 tokens plus a few long ones (a random model never says EOS, so each
request carries its answer's length as its token limit: the engine ends a row there, today's path ends a batch at its
longest answer, as it does at EOS). Images are random 640x480 pictures, drawn from a seed.
"""

from __future__ import annotations

import datetime
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qbench.backbones import BACKBONES
from qbench.engine.answering import STAGES, AnsweringEngine, AnsweringSettings, device_settings, image_key
from qbench.folder import Interrupted, hold, write_table
from qbench.inputs import dtype_name
from qbench.presets import get_preset
from qbench.registry import Registry
from qbench.speed.environment import device_slug, environment
from qbench.speed.flops import head_flops, image_flops, peak_flops, token_flops
from qbench.tokenizers import CORPUS_WORDS, load_tokenizer
from qbench.vlm import VLM, build_vlm

SUITE_QUESTIONS = 245_000  # the vqa suite: VQAv2 val, GQA testdev, VizWiz val, TextVQA val, POPE
SHORT = "\nAnswer the question using a single word or phrase."


@dataclass(frozen=True)
class DatasetShape:
    """One dataset of the suite as the engine sees it."""

    share: float  # of the suite's questions
    per_image: float  # questions per distinct image
    words: tuple[int, int]  # question length in words (inclusive range)
    suffix: str  # lmms-eval's prompt after the question
    ocr_words: tuple[int, int] = (0, 0)  # TextVQA: reference OCR tokens before the suffix


DATASETS: Registry[DatasetShape] = Registry("dataset shape")
DATASETS.register("vqav2")(DatasetShape(214_000 / 245_000, 5.3, (4, 12), SHORT))
DATASETS.register("gqa")(DatasetShape(12_600 / 245_000, 30.0, (6, 16), SHORT))
DATASETS.register("vizwiz")(DatasetShape(4_300 / 245_000, 1.0, (3, 14), "\nWhen the provided information is "
                                         "insufficient, respond with 'Unanswerable'." + SHORT))
DATASETS.register("textvqa")(DatasetShape(5_000 / 245_000, 1.0, (4, 10), SHORT, (5, 25)))
DATASETS.register("pope")(DatasetShape(9_000 / 245_000, 18.0, (7, 8), SHORT))

STREAMS: Registry[dict[str, float]] = Registry("stream")  # stream -> dataset -> share of its questions
STREAMS.register("vqa")({name: DATASETS[name].share for name in DATASETS.names()})
STREAMS.register("vizwiz")({"vizwiz": 1.0})  # one question per image: nothing shared


@dataclass
class Request:
    image: Image.Image
    question: str
    new_tokens: int  # the answer's tokens and its EOS


def answer_length(rng: random.Random) -> int:
    """1-3 answer tokens (as VQA answers are) plus EOS; one answer in 50 is a long one (16 tokens)."""
    return 16 if rng.random() < 0.02 else rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0] + 1


def make_stream(stream: str, questions: int, seed: int = 0, answer_tokens: int | None = None) -> list[Request]:
    """`questions` requests in dataset order, each dataset's questions about an image together (as datasets are);
    every answer `answer_tokens` long where given (as random weights, which never say EOS, answer in a run)."""
    rng = random.Random(seed)
    requests = []
    for name, share in STREAMS[stream].items():
        shape = DATASETS[name]
        wanted = max(1, round(questions * share))
        while wanted > 0:
            asked = min(wanted, max(1, round(rng.expovariate(1 / shape.per_image)) if shape.per_image > 1 else 1))
            image = random_image(rng)
            for _ in range(asked):
                length = answer_length(rng)  # drawn either way, so the questions are the same
                requests.append(Request(image.copy(), question_text(rng, shape), answer_tokens or length))
            wanted -= asked
    return requests


def random_image(rng: random.Random) -> Image.Image:
    pixels = np.random.default_rng(rng.getrandbits(32)).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def question_text(rng: random.Random, shape: DatasetShape) -> str:
    words = " ".join(rng.choices(CORPUS_WORDS, k=rng.randint(*shape.words))).capitalize() + "?"
    ocr = rng.randint(*shape.ocr_words)
    reference = f"\nReference OCR token: {', '.join(rng.choices(CORPUS_WORDS, k=ocr))}" if ocr else ""
    return words + reference + shape.suffix


def random_model(model: str, device: str, dtype: torch.dtype) -> VLM:
    """A preset at full size with random weights (seed 0) and its family's built-in tokenizer (the GPU machine has
    no hub access): token ids as short as a real tokenizer's for these words, inside the model's vocabulary."""
    spec = get_preset(model)
    torch.manual_seed(0)
    vlm = build_vlm(spec, device=device, dtype=dtype, tokenizer=False).eval()
    vlm.tokenizer = load_tokenizer(BACKBONES[spec.backbone.kind].tiny_tokenizer)
    return vlm


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_engine(vlm: VLM, requests: list[Request], settings: AnsweringSettings) -> tuple[list[list[int]], dict]:
    """The engine's answers and its time, after a warm-up pass on the stream's first questions and its longest, to
    the longest answer, then a decoder of that length for every batch size (captures, autotuning: once per run)."""
    engine = AnsweringEngine(vlm, settings)
    warm = requests[: settings.batch] + [max(requests, key=lambda r: len(r.question))]
    longest = max(r.new_tokens for r in requests)
    engine.answer_tokens([r.image for r in warm], [r.question for r in warm], longest)
    max_len = max(decoder.max_len for decoder in engine.decoders.values())
    for size in (1 << power for power in range((settings.batch - 1).bit_length() + 1)):
        engine.decoder(size, max_len)
    engine.reset_tallies()
    synchronize(vlm.device)
    started = time.perf_counter()
    answers = engine.answer_tokens([r.image for r in requests], [r.question for r in requests],
                                   [r.new_tokens for r in requests])
    synchronize(vlm.device)
    seconds = time.perf_counter() - started
    return answers, {"seconds": seconds, "answers_per_s": len(requests) / seconds, "name": engine.name,
                     **{f"{stage}_s": engine.seconds[stage] for stage in STAGES}, **engine.counts,
                     **utilisation(vlm, engine, seconds, len(requests))}


def utilisation(vlm: VLM, engine: AnsweringEngine, seconds: float, requests: int) -> dict[str, float | None]:
    """Model-FLOP utilisation of each stage and of the whole stream (qbench.speed.flops), and its model TFLOP/s; no
    MFU where the device's peak is not known (a CPU)."""
    token, head, counts = token_flops(vlm.backbone), head_flops(vlm), engine.counts
    flops = {"vision": counts["images"] * image_flops(vlm),
             "prefill": counts["prefix_tokens"] * token + counts["images"] * head,
             "question": counts["question_tokens"] * token + requests * head,
             "decode": (counts["answer_tokens"] - requests) * (token + head)}
    peak = peak_flops(torch.cuda.get_device_name(vlm.device) if vlm.device.type == "cuda" else None,
                      dtype_name(vlm.dtype))
    rates = {f"{stage}_tflops": flops[stage] / engine.seconds[stage] / 1e12 if engine.seconds[stage] else None
             for stage in flops}
    rates["tflops"] = sum(flops.values()) / seconds / 1e12
    return {**rates, **{key.replace("tflops", "mfu"): value * 1e12 / peak if peak and value is not None else None
                        for key, value in rates.items()}}


def time_plain(vlm: VLM, requests: list[Request], batch: int) -> tuple[list[list[int]], dict]:
    """Today's path: `VLM.generate` on batches in stream order, each to its longest answer."""
    vlm.generate([requests[0].image], [requests[0].question], 1)  # warm-up
    answers = []
    synchronize(vlm.device)
    started = time.perf_counter()
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        answers += vlm.generate_tokens([r.image for r in chunk], [r.question for r in chunk],
                                max(r.new_tokens for r in chunk))
    synchronize(vlm.device)
    seconds = time.perf_counter() - started
    return answers, {"seconds": seconds, "answers_per_s": len(requests) / seconds}


@dataclass(frozen=True)
class WorkloadConfig:
    models: list[str]
    streams: list[str]
    questions: int = 3000  # per stream, for the engine
    plain_questions: int = 320  # the stream's first ones, for today's path (slower: fewer)
    plain_batch: int = 32
    settings: dict[str, int] = field(default_factory=dict)  # the engine's settings other than its device's defaults
    device: str = "cuda"
    dtype: str = "bf16"
    seed: int = 0
    answer_tokens: int | None = None  # every answer this long (None: 1-3 tokens, 2% of 16, as VQA answers are)

    def command(self, output: str | None = None) -> str:
        """The `qbench workload` command line that runs this, every setting spelled out."""
        import shlex

        options = {"batch": "--batch-size", "encode_batch": "--encode-batch-size"}  # the rest: the setting's name
        settings = [arg for name, value in self.settings.items()
                    for arg in (options.get(name, f"--{name.replace('_', '-')}"), str(value))]
        args = ["--model", ",".join(self.models), "--stream", ",".join(self.streams), "--questions",
                str(self.questions), "--plain-questions", str(self.plain_questions), "--plain-batch-size",
                str(self.plain_batch), *settings, "--device", self.device, "--dtype", self.dtype,
                *(["--answer-tokens", str(self.answer_tokens)] if self.answer_tokens else []),
                *(["--output", output] if output else [])]
        return shlex.join(["qbench", "workload", *args])


def measure(vlm: VLM, model: str, stream: str, config: WorkloadConfig) -> dict:
    """One row: the engine on the whole stream, today's path on its start, their answers compared there."""
    requests = make_stream(stream, config.questions, config.seed, config.answer_tokens)
    settings = replace(device_settings(vlm), **config.settings)
    engine_answers, engine = time_engine(vlm, requests, settings)
    plain_answers, plain = time_plain(vlm, requests[: config.plain_questions], config.plain_batch)
    same = sum(ours == theirs[: request.new_tokens]  # today's row ran on to its batch's longest answer
               for ours, theirs, request in zip(engine_answers, plain_answers, requests))
    question_tokens = [len(vlm.prompt_segments(r.question)[-1]) for r in requests]
    return {
        "model": model, "stream": stream, "questions": len(requests),
        "images": len({image_key(r.image) for r in requests}),
        "mean_question_tokens": float(np.mean(question_tokens)), "visual_tokens": vlm.visual_tokens,
        "mean_new_tokens": float(np.mean([r.new_tokens for r in requests])),
        **{f"engine_{key}": value for key, value in engine.items()},
        "plain_questions": len(plain_answers), "plain_batch": config.plain_batch,
        **{f"plain_{key}": value for key, value in plain.items()},
        "speedup": engine["answers_per_s"] / plain["answers_per_s"],
        "identical_share": same / len(plain_answers),
        "suite_minutes": SUITE_QUESTIONS / engine["answers_per_s"] / 60 if stream == "vqa" else None,
        "plain_suite_minutes": SUITE_QUESTIONS / plain["answers_per_s"] / 60 if stream == "vqa" else None,
        **{f"setting_{key}": value for key, value in asdict(settings).items()},
    }


SCHEMA = "qbench.workload/1"
# What makes two rows the same configuration: measured again, a row replaces its like; other rows are kept.
ROW_KEY = ("model", "stream", "questions", "plain_questions", "plain_batch", "dtype")


def row_key(row: dict) -> tuple:
    return tuple(row.get(field) for field in ROW_KEY) + tuple(sorted(
        (field, value) for field, value in row.items() if field.startswith("setting_")))


def default_out_dir(env: dict) -> Path:
    return Path("results") / "speed" / f"{device_slug(env)}_{datetime.date.today().isoformat()}_answering"


def workload_document(out_dir: Path, command: str, env: dict, config: WorkloadConfig) -> dict:
    """workload.json as this run starts it: an earlier workload's commands, configs and rows kept (from this machine
    and library versions; qbench.speed.results.earlier_document refuses others), this run's command added."""
    from qbench.speed.results import earlier_document

    document = {"schema": SCHEMA, "commands": [command], "environment": env, "configs": [asdict(config)], "rows": []}
    earlier = earlier_document(out_dir / "workload.json", SCHEMA, env, "move it away, or choose another --output")
    if earlier is not None:
        configs = earlier.get("configs") or [earlier.get("config") or {}]  # one config before workloads joined
        dtype = configs[0].get("dtype")
        document |= {"commands": [*(earlier.get("commands") or [earlier.get("command")]), command],
                     "configs": [*configs, asdict(config)],
                     "rows": [{"dtype": dtype, **row} for row in earlier["rows"]]}
    return document


def add_row(document: dict, row: dict) -> None:
    """A measured row, in place of an earlier row of the same configuration (row_key), else after the others."""
    rows = document["rows"]
    same = [index for index, kept in enumerate(rows) if row_key(kept) == row_key(row)]
    if same:
        rows[same[0]] = row
    else:
        rows.append(row)


def run_workload(config: WorkloadConfig, out_dir: Path | None, command: str, log=print) -> Path:
    """Every model on every stream; workload.json/csv in `out_dir` (default results/speed/<device>_<date>_answering/),
    rewritten after each row so that a run cut short keeps what it did, while holding the folder's lock. Rows of
    earlier workloads in the folder are kept (a configuration measured again replaces its row). Ctrl-C: Interrupted,
    saying how many rows were kept."""
    from qbench.inputs import ensure_writable, resolve_dtype

    env = environment(torch.device(config.device))
    out_dir = ensure_writable(out_dir or default_out_dir(env), "--output")
    with hold(out_dir, "give another --output"):
        document = workload_document(out_dir, command, env, config)
        try:
            for model in config.models:
                vlm = random_model(model, config.device, resolve_dtype(config.dtype))
                for stream in config.streams:
                    row = measure(vlm, model, stream, config) | {"dtype": dtype_name(vlm.dtype)}
                    mfu = f", MFU {row['engine_mfu']:.1%}" if row["engine_mfu"] is not None else ""
                    log(f"{model} {stream}: {row['engine_answers_per_s']:.1f} answers/s{mfu} (today's path "
                        f"{row['plain_answers_per_s']:.1f}, x{row['speedup']:.1f}), identical "
                        f"{row['identical_share']:.3f}")
                    add_row(document, row)
                    write_table(out_dir, "workload", document)
                del vlm
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        except KeyboardInterrupt:
            raise Interrupted(f"{len(document['rows'])} rows kept in {out_dir / 'workload.json'}") from None
    return out_dir
