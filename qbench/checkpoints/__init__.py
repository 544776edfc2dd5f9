"""Weights: random, qbench's own format, and each system's published checkpoint format, behind one `load_vlm`."""

from __future__ import annotations

from pathlib import Path

import torch

from qbench.checkpoints.base import CheckpointMismatch, open_safetensors
from qbench.checkpoints.native import WEIGHTS_FILE, read_spec, save_native
from qbench.checkpoints.source import (
    FORMATS,
    LAYOUTS,
    NATIVE,
    ModelSource,
    resolve_source,
)
from qbench.checkpoints.repos import needed_repos, require
from qbench.hub import WeightsNotFound
from qbench.inputs import resolve_dtype
from qbench.vlm import VLM


def check_ready(source: ModelSource) -> None:
    """Fail before data is loaded or a model built when what `load_vlm(source)` reads is missing or damaged, as far
    as a cheap look tells: a qbench folder's safetensors header, and every hub repository it reads (checkpoint, vision
    towers, tokenizer: fetched where the hub answers, all that cannot be had named at once). The loaders check keys
    and shapes later."""
    if source.format == NATIVE:
        read_spec(source.location)  # a folder without its spec.json is named first
        with open_safetensors(Path(source.location) / WEIGHTS_FILE):
            pass
    require(source.spec.name, needed_repos(source))


def load_vlm(model: str | ModelSource, checkpoint: str | None = None, device: str | torch.device = "cpu",
             dtype: torch.dtype | str | None = None, seed: int = 0) -> VLM:
    """A ready VLM: `model` is a resolved ModelSource, or a preset name, alias or qbench checkpoint directory
    (resolved here with `checkpoint` and `seed`). Random weights are drawn with the source's seed, whoever loads
    them; the caller's random state is left alone."""
    source = model if isinstance(model, ModelSource) else resolve_source(model, checkpoint, seed)
    dtype = resolve_dtype(dtype, device)
    spec = None if source.own_folder else source.spec
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(source.seed)
        return FORMATS[source.format](spec, source.location, torch.device(device), dtype).eval()


__all__ = [
    "FORMATS",
    "LAYOUTS",
    "CheckpointMismatch",
    "ModelSource",
    "WeightsNotFound",
    "check_ready",
    "load_vlm",
    "read_spec",
    "resolve_source",
    "save_native",
]
