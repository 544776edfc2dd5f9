"""Loading a state dict into a VLM: check every key and shape first, then load without a second copy."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from qbench.inputs import unreadable
from qbench.vlm import VLM

DAMAGED = "write it again (qbench train) or download it again, or pass another path"


class CheckpointMismatch(ValueError):
    """A checkpoint whose keys or shapes do not fit the model; the message names them."""


def open_safetensors(path: Path) -> Any:
    """safetensors' memory-mapped reader of `path` (use it in a `with`); UnreadableFile naming the file when it is
    missing, cut short or not safetensors at all."""
    try:
        return safe_open(path, framework="pt")
    except FileNotFoundError:
        raise unreadable(path, "is missing", DAMAGED) from None
    except (SafetensorError, OSError) as error:
        raise unreadable(path, f"is not a readable safetensors file ({error}); it is damaged or cut short",
                         DAMAGED) from None


def load_torch_file(path: Path, remedy: str = DAMAGED) -> Any:
    """What torch.save wrote to `path` (memory-mapped, unless it is the legacy format), unpickling only tensors and
    plain data (weights_only=True): a file holding anything else is refused, unrun, since unpickling it could run
    code. UnreadableFile naming the file (and `remedy`) when it is refused, missing or damaged."""
    try:
        return torch.load(path, map_location="cpu", mmap=zipfile.is_zipfile(path), weights_only=True)
    except FileNotFoundError:
        raise unreadable(path, "is missing", remedy) from None
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise unreadable(path, f"is not a readable torch file ({error})", remedy) from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        objects = found.group(1) if found else "refused by weights_only"
        raise unreadable(path, f"holds Python objects besides tensors and plain data ({objects}), which qbench never "
                         "unpickles: loading them could run any code", remedy) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        problem = str(error).split(". ")[0]
        raise unreadable(path, f"is not a readable torch file ({problem}); it is damaged or cut short",
                         remedy) from None


def describe(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def shared_keys(vlm: VLM) -> list[list[str]]:
    """Groups of state-dict keys that name one tensor, in state-dict order: a tied LM head and its embedding,
    Zamba2's shared attention blocks."""
    groups: dict[int, list[str]] = {}
    for key, tensor in vlm.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(key)
    return [keys for keys in groups.values() if len(keys) > 1]


def check_fit(vlm: VLM, state: Mapping[str, tuple[int, ...]], skip_prefixes: tuple[str, ...] = (),
              source: str = "checkpoint") -> None:
    """Raise CheckpointMismatch naming missing and unexpected keys and wrong shapes (`state`: key -> shape)."""
    expected = {k: v.shape for k, v in vlm.state_dict().items() if not k.startswith(skip_prefixes)}
    tied = {k for keys in shared_keys(vlm) if set(keys) & set(state) for k in keys}  # one of them loads them all
    missing = sorted(set(expected) - set(state) - tied)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k])} != {tuple(expected[k])}" for k in set(state) & set(expected)
                   if tuple(state[k]) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"missing keys: {describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {describe(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {describe(wrong)}")
    if problems:
        raise CheckpointMismatch(f"{source} does not fit {vlm.spec.name}: " + "; ".join(problems))


@torch.no_grad()
def load_state(vlm: VLM, shapes: Mapping[str, tuple[int, ...]], read: Callable[[str], torch.Tensor],
               skip_prefixes: tuple[str, ...] = (), source: str = "checkpoint") -> VLM:
    """Check the keys and shapes, then copy each tensor (`read(key)`, e.g. from a memory map) into the VLM,
    one at a time, so that loading never holds a second copy of the model."""
    check_fit(vlm, shapes, skip_prefixes, source)
    own = vlm.state_dict()
    for key in shapes:
        own[key].copy_(read(key))
    return vlm


def load_mapping(vlm: VLM, state: Mapping[str, torch.Tensor], skip_prefixes: tuple[str, ...] = (),
                 source: str = "checkpoint") -> VLM:
    """load_state for an in-memory or memory-mapped state dict."""
    return load_state(vlm, {k: tuple(v.shape) for k, v in state.items()}, state.__getitem__, skip_prefixes, source)
