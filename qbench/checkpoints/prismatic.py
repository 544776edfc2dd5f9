"""The checkpoint layout Cobra and ML-Mamba inherit from TRI-ML's prismatic-vlms: `torch.save({"model": {group:
state_dict}})` as `checkpoints/latest-checkpoint.pt` of a training run, next to its config.json. The vision towers
are not in it: they come from their own pretrained weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from qbench.checkpoints.base import CheckpointMismatch, load_torch_file
from qbench.checkpoints.convert import Rules, rename
from qbench.hub import WeightsNotFound, resolve_file, resolve_repo
from qbench.inputs import UnreadableFile

RUN_CHECKPOINT = "checkpoints/latest-checkpoint.pt"
Groups = dict[str, dict[str, torch.Tensor]]


def groups_in(path: Path) -> Groups | None:
    """The groups of a prismatic .pt, memory-mapped (no tensor is read yet); None if it is not one."""
    try:
        return groups_of(load_torch_file(path))
    except UnreadableFile:
        return None


def groups_of(checkpoint: Any) -> Groups | None:
    """The {group: state_dict} under "model" of a loaded prismatic checkpoint; None if it holds no such thing."""
    groups = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(groups, dict) or not all(
        isinstance(state, dict) and all(isinstance(t, torch.Tensor) for t in state.values()) for state in groups.values()
    ):
        return None
    return groups


def read_groups(path: Path, expected: set[str], system: str) -> Groups:
    """The groups of `path`, which must be exactly `expected`; CheckpointMismatch (or UnreadableFile) otherwise."""
    groups = groups_of(load_torch_file(path, f"download {system}'s published checkpoint again, or pass another path"))
    if groups is None:
        raise CheckpointMismatch(f"{path} is not a {system} checkpoint: not a torch file holding "
                                 "{'model': {group: state_dict}}")
    if set(groups) != expected:
        raise CheckpointMismatch(f"{path} holds the groups {sorted(groups)}; a {system} checkpoint holds "
                                 f"{sorted(expected)}")
    return groups


def flatten(groups: Groups, rules: Mapping[str, Rules]) -> dict[str, torch.Tensor]:
    """One state dict in qbench's key layout; a key no rule of its group matches stays as `group:key`."""
    state: dict[str, torch.Tensor] = {}
    for group, group_state in groups.items():
        state.update(rename(group_state, rules[group], unmatched_prefix=f"{group}:"))
    return state


def local_checkpoint(path: Path, candidates: Sequence[str]) -> Path | None:
    """The .pt that `path` is, or the first of `candidates` under the directory `path`."""
    if path.is_file():
        return path
    return next((path / name for name in candidates if (path / name).is_file()), None)


def locate(location: str, hub_file: str) -> Path:
    """The .pt: the location itself, inside a local directory laid out like the hub repo or like a training run,
    or `hub_file` of the hub repo `location` ($QBENCH_HUB_DIR mirror, else the hub)."""
    path = Path(location)
    if not path.exists():
        return resolve_file(location, hub_file)
    found = local_checkpoint(path, (hub_file, RUN_CHECKPOINT))
    if found is None:
        raise WeightsNotFound(f"{path} holds neither {hub_file} (the hub repo's layout) nor {RUN_CHECKPOINT} "
                              "(a training run's layout)")
    return found


def recognises(path: Path, hub_file: str, groups: set[str]) -> bool:
    """Whether `path` is, or holds, a prismatic .pt with exactly these groups."""
    found = local_checkpoint(path, (hub_file, RUN_CHECKPOINT))
    return found is not None and set(groups_in(found) or ()) == groups


def tower_weights(repo_id: str) -> str:
    """A vision tower's own pretrained weights: local path, $QBENCH_HUB_DIR mirror, or the hub."""
    return resolve_repo(repo_id, what="vision tower weights")
