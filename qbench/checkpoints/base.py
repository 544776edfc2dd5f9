"""Loading a state dict into a VLM: check every key and shape first, then load without a second copy."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from qbench.vlm import VLM


class CheckpointMismatch(ValueError):
    """A checkpoint whose keys or shapes do not fit the model; the message names them."""


def describe(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_fit(vlm: VLM, state: Mapping[str, tuple[int, ...]], skip_prefixes: tuple[str, ...] = (),
              source: str = "checkpoint") -> None:
    """Raise CheckpointMismatch naming missing and unexpected keys and wrong shapes (`state`: key -> shape)."""
    expected = {k: v.shape for k, v in vlm.state_dict().items() if not k.startswith(skip_prefixes)}
    tied = {k for k in expected if k.endswith("lm_head.weight") and vlm.spec.backbone.tie_embeddings}
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
