"""Training data: (image, question, answer) examples from the mini-suites' train split or LLaVA-format
conversation JSON, and the batch order every combination and every process shares."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qbench.prompts import IMAGE
from qbench.vision.transforms import ImageLike


class DataError(ValueError):
    """Training data that cannot be used as given; the message names the file and entry."""


@dataclass(frozen=True)
class Example:
    image: ImageLike
    question: str
    answer: str


def as_examples(records: Iterable[Any]) -> list[Example]:
    """Examples from (image, question, answer) tuples or objects with those attributes."""
    examples = []
    for record in records:
        if isinstance(record, Example):
            examples.append(record)
        elif isinstance(record, (tuple, list)) and len(record) == 3:
            examples.append(Example(*record))
        else:
            examples.append(Example(record.image, record.question, record.answer))
    if not examples:
        raise DataError("no training examples")
    return examples


def llava_examples(json_path: str | Path, image_dir: str | Path) -> list[Example]:
    """Each (human, gpt) turn of a LLaVA-format conversation file as an example with that entry's image.

    Entries without an image (the text-only part of the LLaVA-v1.5 mix) are skipped: every qbench model takes
    one image. Every referenced image must exist under `image_dir`; a missing one is an error naming it.
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    try:
        entries = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read LLaVA conversations from {json_path}: {error}") from error
    if not isinstance(entries, list):
        raise DataError(f"{json_path} must hold a JSON list of conversations, not {type(entries).__name__}")
    examples = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("image"):
            continue
        image = image_dir / entry["image"]
        if not image.is_file():
            raise DataError(f"{json_path} entry {index} ({entry.get('id', '?')}): image {image} does not exist")
        examples += conversation_examples(entry.get("conversations"), image, f"{json_path} entry {index}")
    if not examples:
        raise DataError(f"{json_path} holds no conversation with an image")
    return examples


def conversation_examples(turns: Any, image: Path, where: str) -> list[Example]:
    if not isinstance(turns, list) or len(turns) % 2 or not turns:
        raise DataError(f"{where}: 'conversations' must be a non-empty list of alternating human/gpt turns")
    examples = []
    for human, gpt in zip(turns[::2], turns[1::2]):
        if human.get("from") != "human" or gpt.get("from") != "gpt":
            raise DataError(f"{where}: turns must alternate 'human' then 'gpt', got {human.get('from')!r}, "
                            f"{gpt.get('from')!r}")
        question = human["value"].replace(IMAGE, "").strip()
        examples.append(Example(image, question, gpt["value"].strip()))
    return examples


def batch_indices(size: int, batch: int, step: int, seed: int) -> list[int]:
    """The example indices of global batch `step`: consecutive slices of one seeded permutation per epoch, so any
    step's batch is known without replaying the ones before it (resume) and is the same on every process."""
    start = step * batch
    indices: list[int] = []
    while len(indices) < batch:
        epoch, offset = divmod(start + len(indices), size)
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        indices += order[offset : offset + batch - len(indices)].tolist()
    return indices


def shard(indices: list[int], rank: int, world: int) -> list[int]:
    """This process's contiguous share of a global batch."""
    if len(indices) % world:
        raise ValueError(f"the global batch ({len(indices)}) must divide evenly over {world} processes")
    per = len(indices) // world
    return indices[rank * per : (rank + 1) * per]
