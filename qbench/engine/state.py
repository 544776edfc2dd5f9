"""A backbone's decode state taken apart by row: the state after a shared prefix, copied into the rows of another.

Works on every backbone's DecodeState the same way (Mamba-1 conv + SSM state, Mamba-2 state, the Llama static KV
cache): its tensors in `tensors_of` order, batch first; a KV cache's shorter sequence axis fills the leading
positions of the longer one; a scalar (the static cache's length) is copied whole.
"""

from __future__ import annotations

import torch

from qbench.backbones import Backbone, DecodeState
from qbench.engine.graph import tensors_of


def allocated_state(backbone: Backbone, batch: int, max_len: int) -> DecodeState:
    """A state of `batch` rows whose tensors all exist (a cache allocates them on its first write): one zero token
    prefilled into it, which `load_rows` then overwrites."""
    state = backbone.new_state(batch, max_len)
    parameter = next(backbone.parameters())
    embeds = torch.zeros(batch, 1, backbone.hidden_size, dtype=parameter.dtype, device=parameter.device)
    backbone.prefill(embeds, torch.ones(batch, 1, dtype=torch.long, device=parameter.device), state)
    return state


def load_rows(source: DecodeState, rows: torch.Tensor, target: DecodeState, at: torch.Tensor | None = None) -> None:
    """target row at[i] := source row rows[i] (at: 0, 1, ... by default), in place, so that a captured CUDA graph sees
    it; a shorter sequence axis fills the leading positions, a scalar is copied whole."""
    for src, dst in zip(tensors_of(source), tensors_of(target), strict=True):
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
