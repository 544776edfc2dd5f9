"""qbench's VLMs as an lmms-eval model, so the tasks, prompts and scoring are lmms-eval's.

A simple model: lmms-eval gives the plain prompt and the image; the VLM applies its own system's template and
places the visual tokens. Registered through the `lmms_eval.models` entry point as `qbench`:

    lmms-eval --model qbench --model_args preset=cobra,dtype=bf16 --batch_size 8 --tasks vqav2_val

Model args: `preset` (a preset, an alias, or a qbench checkpoint folder), `checkpoint` (as `qbench run
--checkpoint`), `device` (default: this process's GPU, else the CPU), `dtype`, `max_new_tokens` (used where a
task sets none); the batch size comes from lmms-eval's own --batch_size. Under `torchrun` or `accelerate launch`
each process takes its own GPU (LOCAL_RANK) and lmms-eval deals it every n-th document.
"""

from __future__ import annotations

import gc
import itertools
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from lmms_eval.api.model import lmms
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from qbench.engine.answering import AnsweringEngine, device_settings, image_key
from qbench.inputs import process_rank, resolve_device
from qbench.suites.journal import Journal
from qbench.vision import load_image
from qbench.vlm import VLM

# A picture that cannot be read: the sample is recorded with this error and the run goes on.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError)
ENGINES = ("answering", "plain")
ENGINE_CHUNK = 1024  # requests the answering engine plans together (their images are held in memory meanwhile)


def reference(doc: dict[str, Any]) -> Any:
    """The ground truth as the dataset gives it: the list of answers, or the one answer."""
    if doc.get("answers") is not None:
        return [a["answer"] if isinstance(a, dict) else a for a in doc["answers"]]
    return doc.get("answer")


IMAGE_IDS = ("image_id", "imageId", "image_source")  # the datasets' own image ids: VQAv2/TextVQA, GQA, POPE


def image_of(raw: dict[str, Any], image: Any) -> str | None:
    """What image a question asks about, for the bootstrap by image: the dataset's own image id where it has one,
    else a digest of the decoded image's pixels (None for an image that could not be read)."""
    for field in IMAGE_IDS:
        if raw.get(field) is not None:
            return f"{field}:{raw[field]}"
    return None if image is None else f"pixels:{image_key(image)[-1].hex()}"


def chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def cut(text: str, until: list[str]) -> str:
    """The answer up to the first stop string."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text.strip()


class QBenchLMM(lmms):
    """A qbench VLM answering lmms-eval's generate_until requests, in batches of one task, greedily."""

    is_simple = True

    def __init__(self, preset: str | None = None, checkpoint: str | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int | str = 1, max_new_tokens: int = 16,
                 vlm: VLM | None = None, journal: Journal | None = None, engine: str = "answering",
                 seed: int = 0) -> None:
        """Either `preset` (loaded here; random weights drawn with `seed`, as `qbench run` draws them) or a ready
        `vlm`; `journal` records answers for resuming. `engine`:
        `answering` (the answering engine, each image's prefix once, over chunks of ENGINE_CHUNK requests) or `plain`
        (`VLM.generate` per batch)."""
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
        super().__init__()
        if (preset is None) == (vlm is None):
            raise ValueError("give the qbench model either preset=NAME_OR_CHECKPOINT_DIR or a loaded vlm")
        if vlm is None:
            from qbench.checkpoints import load_vlm

            vlm = load_vlm(preset, checkpoint, resolve_device(device), dtype, int(seed))
        self._rank, _, self._world_size = process_rank()
        self.vlm = vlm
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.journal = journal if journal is not None else Journal()
        self.generated = 0  # samples answered by the model in this process (not taken from the journal)
        # where the time answering them went: in the engine, and waiting for the reader (documents and images, read
        # in a thread while the engine answers the batch before); `reading` is the reader's own time, mostly overlapped
        self.timing = dict.fromkeys(("engine", "waiting", "reading"), 0.0)
        self._raw_docs: dict[tuple[str, str], Any] = {}
        self.engine = engine
        self.answering = AnsweringEngine(vlm, device_settings(vlm, self.batch_size)) \
            if engine == "answering" else None

    @property
    def device(self) -> torch.device:
        return self.vlm.device

    @property
    def engine_name(self) -> str:
        """What answered: the answering engine (and its decode) or `VLM.generate` per batch."""
        return self.answering.name if self.answering else "generate"

    def clean(self) -> None:
        """lmms-eval calls this after inference; its default deletes the model, which must stay usable."""
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def loglikelihood(self, requests):
        raise NotImplementedError("qbench models answer generate_until tasks only")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("qbench models answer single-turn generate_until tasks only")

    # --- answering ------------------------------------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        todo = list({(r.args[4], r.args[3]): r for r in requests if self.journal.get(r.args[4], r.args[3]) is None}
                    .values())  # each sample once (lmms-eval pads ranks with repeats)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        batches = [batch for _, same_task in itertools.groupby(todo, key=lambda r: r.args[4])
                   for batch in chunks(list(same_task), ENGINE_CHUNK if self.answering else self.batch_size)]
        with Progress(*columns, disable=self._rank != 0) as progress, ThreadPoolExecutor(1) as reader:
            bar = progress.add_task("answering", total=len(todo))
            reads = [reader.submit(self.read, batch) for batch in batches[:1]]
            for index, batch in enumerate(batches):
                progress.update(bar, description=f"answering {batch[0].args[4]}")
                if index + 1 < len(batches):  # the next batch is read while the engine answers this one
                    reads.append(reader.submit(self.read, batches[index + 1]))
                self.journal.add(self.answer(batch, reads.pop(0)))
                progress.advance(bar, len(batch))
        return [self.journal.get(r.args[4], r.args[3])["answer"] for r in requests]

    def read(self, batch: list) -> tuple[list[dict[str, Any]], list]:
        """A batch's journal rows (answers still empty) and the images that could be read; a sample whose image
        cannot be read gets an error."""
        started = time.perf_counter()
        rows, images = [], []
        for request in batch:
            context, _, doc_to_visual, doc_id, task, split = request.args
            raw = self.raw_doc(task, split, doc_id)
            row = {"task": task, "doc_id": doc_id, "question_id": raw.get("question_id", raw.get("id")),
                   "prompt": context, "answer": "", "target": reference(raw), "error": None}
            try:
                images.append(self.image(doc_to_visual, task, split, doc_id))
            except IMAGE_ERRORS as error:
                row["error"] = f"{type(error).__name__}: {error}"
            row["image"] = image_of(raw, images[-1] if row["error"] is None else None)
            rows.append(row)
        self.timing["reading"] += time.perf_counter() - started
        return rows, images

    def answer(self, batch: list, read: Future) -> list[dict[str, Any]]:
        """Journal rows for a batch of requests of one task, from its rows and images as `read` gives them."""
        started = time.perf_counter()
        rows, images = read.result()
        engine_started = time.perf_counter()
        self.timing["waiting"] += engine_started - started
        readable = [row for row in rows if row["error"] is None]
        if readable:
            kwargs = batch[0].args[1]
            until = kwargs.get("until") or []
            generate = self.answering.answer if self.answering else self.vlm.generate
            answers = generate(images, [row["prompt"] for row in readable],
                                        int(kwargs.get("max_new_tokens") or self.max_new_tokens))
            for row, text in zip(readable, answers):
                row["answer"] = cut(text, [until] if isinstance(until, str) else until)
        self.timing["engine"] += time.perf_counter() - engine_started
        self.generated += len(batch)
        return rows

    @property
    def seconds(self) -> float:
        """Time spent answering: waiting for the reader, then in the engine."""
        return self.timing["waiting"] + self.timing["engine"]

    def raw_doc(self, task: str, split: str, doc_id: int) -> dict[str, Any]:
        """The document without decoding its image (which may be what is broken)."""
        if (task, split) not in self._raw_docs:
            self._raw_docs[task, split] = self.task_dict[task][split].with_format("arrow")
        return self._raw_docs[task, split][doc_id].to_pylist()[0]

    def image(self, doc_to_visual, task: str, split: str, doc_id: int):
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        if len(visuals) != 1:
            raise NotImplementedError(f"qbench models take one image per question; {task} gave {len(visuals)}")
        return load_image(visuals[0])  # decoded here, so a broken picture fails alone, not inside the batch


def manifest():
    """The `lmms_eval.models` entry point. lmms-eval loads entry points while `lmms_eval.models` is being imported,
    so this module must not import that package at its top (it would find this module half-initialised)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="qbench", simple_class_path="qbench.suites.lmms_model.QBenchLMM")
