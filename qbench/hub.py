"""Finding weights: a local path, a local mirror of the hub ($QBENCH_HUB_DIR/<org>/<name>), or the hub itself."""

from __future__ import annotations

import os
from pathlib import Path

from qbench.inputs import UserError, check_folder

HUB_DIR_ENV = "QBENCH_HUB_DIR"  # a local mirror of the hub: $QBENCH_HUB_DIR/<org>/<name>


class WeightsNotFound(FileNotFoundError, UserError):
    """Weights, a tokenizer or data that is neither local nor reachable; the message says how to fix it."""


def mirror_path(repo_id: str) -> Path | None:
    root = os.environ.get(HUB_DIR_ENV)
    if root:
        check_folder(root, HUB_DIR_ENV, "point it at a readable folder of hub copies (<org>/<name>), or unset it")
    return Path(root) / repo_id if root else None


def how_to_fix(repo_id: str) -> str:
    return (f"On a machine with hub access run `hf download {repo_id} --local-dir DIR`, copy DIR here, and pass "
            f"DIR as the path, or set QBENCH_HUB_DIR so that DIR is $QBENCH_HUB_DIR/{repo_id}.")


def resolve_repo(source: str, what: str = "weights", files: list[str] | None = None, local_only: bool = False) -> str:
    """A local directory holding `source`: the path itself, its mirror under $QBENCH_HUB_DIR, or the hub cache
    (fetching only the `files` glob patterns, where given; never asking the hub where `local_only`)."""
    if Path(source).exists():
        return str(source)
    mirror = mirror_path(source)
    if mirror is not None and mirror.exists():
        return str(mirror)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(source, allow_patterns=files, local_files_only=local_only)
    except Exception as error:  # offline, unknown repo, no network: all mean the same to the user
        raise WeightsNotFound(f"cannot find {what} {source!r}: not a local path"
                              f"{', not under $QBENCH_HUB_DIR' if mirror else ''}, and the hub did not answer "
                              f"({type(error).__name__}). {how_to_fix(source)}") from None


def resolve_file(source: str, filename: str, what: str = "checkpoint") -> Path:
    """One file of a hub repo (or of a local copy of it)."""
    local = Path(source)
    if local.is_file():
        return local
    for root in (local, mirror_path(source)):
        if root is not None and (root / filename).is_file():
            return root / filename
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(source, filename))
    except Exception as error:
        raise WeightsNotFound(f"cannot find {what} {filename!r} of {source!r}: not a local file or directory, "
                              f"and the hub did not answer ({type(error).__name__}). {how_to_fix(source)}") from None
