"""A backbone's decode state, and what every engine and sweep does with it by row: walk, copy, load rows, allocate.

A state is the backbone's cache (a Mamba conv + SSM state, a Transformer's static KV cache, or both for a hybrid),
plus the padding mask and each row's next position. Its tensors are batch first; the backbone says how to walk them
(`Backbone.state_tensors`), and everything here works through that walk, so one copy or row load serves every
backbone: a KV cache's shorter sequence axis fills the leading positions of a longer one, and a scalar (a static
cache's length) is copied whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from qbench.backbones.base import Backbone


@dataclass
class DecodeState:
    """Everything a decode step reads and writes in place: the recurrent state or KV cache, and the padding mask."""

    cache: Any
    mask: torch.Tensor  # [B, max_len] 1 where a real token sits (left padding is 0)
    positions: torch.Tensor  # [B] position id of the next token
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """A transformers cache's tensors in a fixed order: layer by layer, each layer's tensor attributes and dicts of
    them by name (keys and values, conv and recurrent states, whatever a layer type names them)."""
    return [tensor for layer in getattr(cache, "layers", []) for name in sorted(vars(layer))
            for tensor in tensors_in(vars(layer)[name])]


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from tensors_in(value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)


def tensors_of(backbone: Backbone, state: DecodeState) -> list[torch.Tensor]:
    """Every tensor of a state in a fixed order: the backbone's cache tensors, then the mask, positions and extras."""
    return [*backbone.state_tensors(state), state.mask, state.positions, *(state.extra[k] for k in sorted(state.extra))]


def allocated_state(backbone: Backbone, batch: int, max_len: int) -> DecodeState:
    """A state of `batch` rows whose tensors all exist (a cache allocates them on its first write): one zero token
    prefilled into it, which a copy or `load_rows` then overwrites."""
    state = backbone.new_state(batch, max_len)
    parameter = next(backbone.parameters())
    embeds = torch.zeros(batch, 1, backbone.hidden_size, dtype=parameter.dtype, device=parameter.device)
    backbone.prefill(embeds, torch.ones(batch, 1, dtype=torch.long, device=parameter.device), state)
    return state


def copy_state(backbone: Backbone, source: DecodeState, target: DecodeState, start: int = 0) -> None:
    """Copy every tensor of a prefilled state into another, in place (a captured graph keeps seeing it): into the
    same-shaped tensor, or, for a state of fewer sequences, into rows `start`.. of the batch (scalars whole)."""
    for src, dst in zip(tensors_of(backbone, source), tensors_of(backbone, target), strict=True):
        if src.shape == dst.shape:
            dst.copy_(src)
        elif src.dim() and src.shape[1:] == dst.shape[1:] and start + src.shape[0] <= dst.shape[0]:
            dst[start : start + src.shape[0]].copy_(src)
        else:
            raise ValueError(f"state tensor of shape {tuple(src.shape)} cannot replace one of {tuple(dst.shape)}")


def load_rows(backbone: Backbone, source: DecodeState, rows: torch.Tensor, target: DecodeState,
              at: torch.Tensor | None = None) -> None:
    """target row at[i] := source row rows[i] (at: 0, 1, ... by default), in place; a shorter sequence axis fills the
    leading positions, a scalar is copied whole."""
    for src, dst in zip(tensors_of(backbone, source), tensors_of(backbone, target), strict=True):
        if src.dim() == 0:
            dst.copy_(src)
            continue
        picked = src.index_select(0, rows)
        if picked.dim() != dst.dim() or any(s > d for s, d in zip(picked.shape[1:], dst.shape[1:])):
            raise ValueError(f"state rows of shape {tuple(picked.shape)} do not fit a state of {tuple(dst.shape)}")
        inner = tuple(slice(0, size) for size in picked.shape[1:])
        if at is None:
            dst[(slice(0, picked.shape[0]), *inner)] = picked
        else:
            dst[(at, *inner)] = picked


def repeat_rows(backbone: Backbone, state: DecodeState, filled: int) -> None:
    """Rows filled.. of every batch-wide state tensor become copies of rows ..filled, doubling the copied block."""
    batch = state.mask.shape[0]
    for tensor in tensors_of(backbone, state):
        done = filled
        while tensor.dim() and tensor.shape[0] == batch and done < batch:
            count = min(done, batch - done)
            tensor[done : done + count].copy_(tensor[:count])
            done += count
