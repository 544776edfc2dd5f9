"""What every projector is: visual features [B, N, D_vision] on a square grid -> LLM embeddings [B, T, D_llm]."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn


class Projector(nn.Module):
    """Built as `Class(in_dim, out_dim, **options)`; says how many visual tokens it hands over and how to ask for
    another count."""

    tiny_options: ClassVar[dict[str, Any]] = {}  # its options in the tiny twins (small widths, the 8 x 8 patch grid)

    def tokens_out(self, grid: int) -> int:
        """Visual tokens handed to the LLM for a grid x grid patch input."""
        return grid * grid

    @classmethod
    def options_for_tokens(cls, options: dict[str, Any], tokens: int) -> dict[str, Any] | None:
        """Options that make it hand over `tokens` visual tokens; None where the tower's patch grid sets the count
        (then the resolution changes)."""
        return None


def square_side(tokens: int, projector: str) -> int:
    """The side of a square grid of `tokens`; ValueError naming the projector that needs one."""
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"{tokens} visual tokens is not a square grid, which the {projector} projector needs")
    return side


def square_grid(tokens: torch.Tensor) -> int:
    """Side of the square patch grid that `tokens` [B, N, D] lies on."""
    side = math.isqrt(tokens.shape[1])
    if side * side != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} visual tokens do not form a square grid")
    return side


def gelu_mlp(dims: list[int], final_gelu: bool = False) -> nn.Sequential:
    """Linear layers through `dims` with exact-erf GELU between them (and after the last, if asked)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims, dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2 or final_gelu:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)
