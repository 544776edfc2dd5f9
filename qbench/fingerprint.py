"""Fingerprints: what identifies weights and data, so that a run knows what it answered with and a cache knows
what it holds.

A file's fingerprint is the sha256 of its bytes; a folder's, that of its files' relative names and fingerprints,
so the same data has the same fingerprint wherever it lies. Hidden files and folders and __pycache__ do not count:
they are bookkeeping, not data (a folder's lock, `hf download`'s .cache/, .gitattributes, compiled task utils). Hashing a large local copy (tens of GB) takes a while,
so each file's digest is remembered in <cache root>/fingerprints.json, keyed on its path, inode, size and
modification and change times: a file rewritten in any way is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from qbench.folder import write_atomic
from qbench.inputs import check_folder

CACHE_ENV = "QBENCH_CACHE"  # qbench's cache root (default ~/.cache/qbench)
MEMO = "fingerprints.json"


def cache_root() -> Path:
    """qbench's cache folder ($QBENCH_CACHE, default ~/.cache/qbench); a UserError when it is a file."""
    return check_folder(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qbench", CACHE_ENV,
                        f"set {CACHE_ENV} to a folder qbench may keep file digests in")


def memo_key(path: Path) -> str | None:
    """A file as the memo knows it: path, then inode, size and change times (None if it is gone)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return f"{path.resolve()}|{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"


def file_digest(path: Path, memo: dict[str, str] | None = None) -> str:
    """The sha256 of a file's bytes (looked up in `memo` by path, size and modification time first)."""
    key = memo_key(path)
    if memo is not None and key in memo:
        return memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    if memo is not None:
        memo[key] = digest.hexdigest()
    return digest.hexdigest()


@contextlib.contextmanager
def remembered() -> Iterator[dict[str, str]]:
    """The memo of file digests, written back (files since changed or gone forgotten) if digests were added."""
    memo_file = cache_root() / MEMO
    memo = read_memo(memo_file)
    known = len(memo)
    yield memo
    if len(memo) != known:
        current = {key: digest for key, digest in memo.items() if memo_key(Path(key.rpartition("|")[0])) == key}
        write_atomic(memo_file, json.dumps(current, indent=0) + "\n")


def fingerprint(path: str | Path) -> str:
    """The sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    path = Path(path)
    with remembered() as memo:
        if path.is_file():
            return file_digest(path, memo)
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not hidden(p.relative_to(path))):
            digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file, memo)}\n".encode())
        return digest.hexdigest()


def image_digest(image: Any, memo: dict[str, str]) -> str:
    """The sha256 of an image as a training example holds it: encoded bytes, a file (its bytes), or a PIL image
    (its mode, size and pixels)."""
    if isinstance(image, (bytes, bytearray)):
        return hashlib.sha256(image).hexdigest()
    if isinstance(image, (str, Path)):
        return file_digest(Path(image), memo)
    return hashlib.sha256(f"{image.mode}|{image.size}|".encode() + image.tobytes()).hexdigest()


def examples_fingerprint(examples: Sequence[Any]) -> str:
    """The sha256 of training examples in order: each one's image, question and answer. What a training run trained
    on, as a run folder's data fingerprint is what a run answered: a resume on other data is refused."""
    digest = hashlib.sha256()
    with remembered() as memo:
        for example in examples:
            digest.update(f"{image_digest(example.image, memo)}\0{example.question}\0{example.answer}\n".encode())
    return digest.hexdigest()


def hidden(relative: Path) -> bool:
    """Bookkeeping, not data: hidden files and folders, and the __pycache__ Python writes beside a task's utils.py."""
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def read_memo(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: every file is hashed again


def weights_digest(module: torch.nn.Module) -> str:
    """The sha256 of a model's weights as they are in memory (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
