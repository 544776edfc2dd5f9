"""The answering engine: a large set of (image, question) requests answered greedily, each image's prefix once.

Planned together: requests are grouped by image (the hash of its pixels, or its path), and the distinct images are
taken in windows. Per window, the images are preprocessed in worker threads (the next window's while this one runs),
encoded by the tower and projector, and their prompt prefix (the text before the image, then its visual tokens:
qbench.prompts) is prefilled once into a bank of states. Every question about the image continues from a copy of its
row: its questions, sorted by length, are cut into batches whose rows load their image's prefix state, continue it
by the question's tokens (`Backbone.extend`: each backbone takes the chunk its own way) and decode greedily until
every row has ended. The batch's decode step is captured as a CUDA graph once
per batch size and reused (on the CPU it runs eagerly).

The answers are `VLM.generate`'s: the same tokens in the same positions, only computed once where they are shared.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from qbench.backbones import DecodeState
from qbench.backbones.decode import EagerDecoder, greedy_from
from qbench.backbones.state import allocated_state, load_rows
from qbench.engine import make_decoder
from qbench.vision.transforms import ImageLike
from qbench.vlm import VLM, until_eos

STAGES = ("preprocess", "vision", "prefill", "question", "decode")  # where the time goes (seconds, wall clock)
# the work each stage did: images encoded, prompt-prefix tokens prefilled, question tokens taken in, answer tokens
# (the first comes with the question's logits, the others from decode steps)
COUNTS = ("images", "prefix_tokens", "question_tokens", "answer_tokens")
LENGTH_STEP = 64  # a batch's state holds prefix + longest question + new tokens, rounded up to this (fewer captures)


@dataclass(frozen=True)
class AnsweringSettings:
    batch: int = 64  # questions decoded together (padded up to a power of two, one captured graph each)
    window: int = 64  # distinct images whose prefix states are held at once
    encode_batch: int = 16  # images per tower + projector + prefill call
    workers: int = 4  # preprocessing threads


BATCH = {"cuda": 256, "cpu": 128}  # questions decoded together and images held at most, as the state memory allows
STATE_SHARE = 0.6  # of the memory free beside the model, for the bank and the decoders' states
ROW_ROOM = 128  # tokens beyond the prefix a decode row is sized for (question + answer)


def device_settings(vlm: VLM, batch: int = 1) -> AnsweringSettings:
    """The engine's settings on `vlm`'s device: the largest power of two from `batch` up to BATCH (256 on a GPU,
    128 on the CPU, where small batches spend their time in per-step overhead), both as the decode batch and the
    window of images, whose states fit in STATE_SHARE of the free memory: the bank's rows plus the decoders' (one
    per power of two up to the batch: twice its rows). A Mamba backbone's rows are small: the full batch; a 7B
    Llama's KV cache of ~700 tokens (350 MB a row in bf16) allows about 64 on an H200. Settings never change an
    answer."""
    prefix = len(vlm.prompt_segments("")[0]) + vlm.visual_tokens
    bank_row, decode_row = row_bytes(vlm, prefix), row_bytes(vlm, prefix + ROW_ROOM)
    budget = STATE_SHARE * free_memory(vlm.device)
    size = BATCH.get(vlm.device.type, BATCH["cpu"])
    while size > max(batch, 1) and size * (bank_row + 2 * decode_row) > budget:
        size //= 2
    workers = 8 if vlm.device.type == "cuda" else 2
    return AnsweringSettings(batch=size, window=size, encode_batch=16, workers=workers)


def free_memory(device: torch.device) -> int:
    """Bytes free on a GPU, or available on the host."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def row_bytes(vlm: VLM, length: int) -> int:
    """Bytes of one row of the backbone's decode state (cache or recurrent state) holding `length` tokens."""
    return vlm.backbone.state_bytes(allocated_state(vlm.backbone, 1, length))


def image_key(image: ImageLike) -> Hashable:
    """What identifies an image: a digest of a PIL image's pixels or of encoded bytes; a file's resolved path."""
    if isinstance(image, Image.Image):
        return "pixels", image.mode, image.size, hashlib.blake2b(image.tobytes(), digest_size=16).digest()
    if isinstance(image, (bytes, bytearray)):
        return "bytes", hashlib.blake2b(image, digest_size=16).digest()
    if isinstance(image, (str, Path)):
        return "path", str(Path(image).resolve())
    raise TypeError(f"an image is a PIL image, a path or encoded bytes, not {type(image).__name__}")


@dataclass
class Plan:
    """Requests grouped by image: `asked[k]` are the requests about distinct image k, `image_of[i]` request i's."""

    asked: list[list[int]]
    image_of: list[int]
    before: list[int]  # the prompt's tokens before the image (the same for every question)
    after: list[list[int]]  # each request's tokens after the image

    def windows(self, size: int) -> Iterator[range]:
        for start in range(0, len(self.asked), size):
            yield range(start, min(start + size, len(self.asked)))


class AnsweringEngine:
    """Answers many questions about fewer images with `vlm`; `seconds` sums the time of each stage over calls."""

    def __init__(self, vlm: VLM, settings: AnsweringSettings = AnsweringSettings()):
        self.vlm, self.settings = vlm, settings
        self.device = vlm.device
        self.decoders: dict[int, EagerDecoder] = {}  # batch -> decoder over its own state
        self.banks: dict[int, DecodeState] = {}  # prefix length -> state of `window` rows
        self.reset_tallies()

    def reset_tallies(self) -> None:
        """Start the time of each stage and the counts of what was done from zero (after a warm-up)."""
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.counts = dict.fromkeys(COUNTS, 0)

    @property
    def name(self) -> str:
        return "answering (CUDA graph decode)" if self.device.type == "cuda" else "answering (eager decode)"

    # --- planning ----------------------------------------------------------------------------------------------------
    def plan(self, images: Sequence[ImageLike], questions: Sequence[str], pool: ThreadPoolExecutor) -> Plan:
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images for {len(questions)} questions")
        if any(isinstance(image, (list, tuple)) for image in images):
            raise ValueError("the answering engine takes one image per question; use VLM.generate for several")
        segments = [self.vlm.prompt_segments(question) for question in questions]
        befores = {tuple(before) for before, _ in segments}
        if len(befores) > 1:
            raise ValueError(f"the {self.vlm.spec.prompt!r} prompt puts question text before the image; its prefix "
                             "cannot be shared")
        distinct: dict[Hashable, int] = {}
        image_of = [distinct.setdefault(key, len(distinct)) for key in pool.map(image_key, images)]
        asked: list[list[int]] = [[] for _ in distinct]
        for request, image in enumerate(image_of):
            asked[image].append(request)
        return Plan(asked, image_of, list(befores.pop()), [after for _, after in segments])

    # --- answering ---------------------------------------------------------------------------------------------------
    def answer(self, images: Sequence[ImageLike], questions: Sequence[str],
               max_new_tokens: int | Sequence[int] = 16) -> list[str]:
        """Greedy answers, one per (image, question), as `VLM.generate` gives them; `max_new_tokens` for all, or
        one per question."""
        return [self.vlm.decode_answer(row) for row in self.answer_tokens(images, questions, max_new_tokens)]

    @torch.inference_mode()
    def answer_tokens(self, images: Sequence[ImageLike], questions: Sequence[str],
                      max_new_tokens: int | Sequence[int] = 16) -> list[list[int]]:
        """`answer`'s greedy tokens, as `VLM.generate_tokens` gives them: each up to its EOS (included)."""
        if not questions:
            return []
        settings = self.settings
        limits = [max_new_tokens] * len(questions) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(limits) != len(questions) or min(limits) < 1:
            raise ValueError(f"max_new_tokens: one count of at least 1 for all, or one per question ({len(questions)})")
        tokens: list[list[int]] = [[] for _ in questions]
        with ThreadPoolExecutor(settings.workers) as pool:
            plan = self.plan(images, questions, pool)
            prefix = len(plan.before) + self.vlm.visual_tokens
            max_len = -(-(prefix + max(map(len, plan.after)) + max(limits)) // LENGTH_STEP) * LENGTH_STEP
            windows = list(plan.windows(settings.window))
            pending = [self.preprocess(pool, plan, windows[0], images)]
            for index, window in enumerate(windows):
                if index + 1 < len(windows):  # the next window's pixels are made while this one runs
                    pending.append(self.preprocess(pool, plan, windows[index + 1], images))
                bank = self.encode(pending.pop(0), plan, prefix)
                members = sorted((request for image in window for request in plan.asked[image]),
                                 key=lambda request: len(plan.after[request]))
                for start in range(0, len(members), settings.batch):
                    batch = members[start : start + settings.batch]
                    rows = [plan.image_of[request] - window.start for request in batch]
                    answers = self.answer_batch(bank, rows, [plan.after[r] for r in batch], max_len,
                                                [limits[r] for r in batch])
                    for request, row in zip(batch, answers):
                        tokens[request] = row
        return tokens

    def preprocess(self, pool: ThreadPoolExecutor, plan: Plan, window: range,
                   images: Sequence[ImageLike]) -> list[Future]:
        """Pixels of a window's images, in chunks of `encode_batch`, made by the worker threads."""
        chosen = [images[plan.asked[image][0]] for image in window]
        size = self.settings.encode_batch
        return [pool.submit(self.vlm.preprocess, chosen[start : start + size]) for start in range(0, len(chosen), size)]

    def encode(self, chunks: list[Future], plan: Plan, prefix: int) -> DecodeState:
        """The window's prefix states (rows in image order) in the bank: tower, projector, one prefill per chunk."""
        bank = self.bank(prefix)
        backbone, offset = self.vlm.backbone, 0
        before = torch.tensor(plan.before, dtype=torch.long, device=self.device)
        for chunk in chunks:
            with self.stage("preprocess"):
                pixels = chunk.result()
            with self.stage("vision"):
                visual = self.vlm.encode_images(pixels)
            with self.stage("prefill"):
                count = visual.shape[0]
                text = backbone.embed(before)[None].expand(count, -1, -1).to(visual.dtype)
                embeds = torch.cat([text, visual], dim=1)
                state = backbone.new_state(count, prefix)
                backbone.prefill(embeds, torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device), state)
                rows = torch.arange(count, device=self.device)
                load_rows(backbone, state, rows, bank, at=rows + offset)
            offset += count
            self.counts["images"] += count
            self.counts["prefix_tokens"] += count * prefix
        return bank

    def answer_batch(self, bank: DecodeState, rows: list[int], questions: list[list[int]], max_len: int,
                     limits: list[int]) -> list[list[int]]:
        """Greedy tokens of a batch of questions, each continuing its image's row of the bank."""
        count, size = len(rows), 1 << (len(rows) - 1).bit_length()  # padded up to a power of two
        decoder = self.decoder(size, max_len)
        longest = max(map(len, questions))
        ids = torch.full((size, longest), self.vlm.pad_id, dtype=torch.long)
        mask = torch.zeros(size, longest, dtype=torch.long)
        for row, question in enumerate(questions):
            ids[row, longest - len(question) :] = torch.tensor(question)
            mask[row, longest - len(question) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        sources = torch.tensor(rows + [rows[0]] * (size - count), device=self.device)  # padding rows copy the first
        with self.stage("question"):
            logits = self.take_question(decoder, bank, sources, ids, mask)
        with self.stage("decode"):
            finished = torch.arange(size, device=self.device) >= count
            ends = torch.tensor(limits + [1] * (size - count), device=self.device)
            out = greedy_from(decoder, logits, max(limits), self.vlm.eos_id, finished, ends)
        answers = [until_eos(row[:limit], self.vlm.eos_id) for row, limit in zip(out.tolist(), limits)]
        self.counts["question_tokens"] += sum(map(len, questions))
        self.counts["answer_tokens"] += sum(map(len, answers))
        return answers

    def take_question(self, decoder: EagerDecoder, bank: DecodeState, sources: torch.Tensor, ids: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
        """Load each row's prefix state and continue it by its question (left-padded `ids`); the last logits."""
        load_rows(self.vlm.backbone, bank, sources, decoder.state)
        return self.vlm.backbone.extend(ids, mask, decoder.state)

    # --- states and decoders, made once and reused -----------------------------------------------------------------------
    def bank(self, prefix: int) -> DecodeState:
        if prefix not in self.banks:
            self.banks[prefix] = allocated_state(self.vlm.backbone, self.settings.window, prefix)
        return self.banks[prefix]

    def decoder(self, batch: int, max_len: int) -> EagerDecoder:
        """A decoder of `batch` rows over its own state of at least `max_len` tokens: on a GPU its step captured
        once as a CUDA graph. One per batch size: a longer one replaces it (its state is freed first)."""
        if batch not in self.decoders or self.decoders[batch].max_len < max_len:
            self.decoders.pop(batch, None)
            graph = self.device.type == "cuda"
            decoder = make_decoder("graph-nocompile" if graph else "eager", self.vlm.backbone, batch, max_len)
            decoder.state = allocated_state(self.vlm.backbone, batch, max_len)
            if graph:
                decoder.capture_step()
            self.decoders[batch] = decoder
        return self.decoders[batch]

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; on a GPU it ends when the device has finished its work."""
        started = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[name] += time.perf_counter() - started
