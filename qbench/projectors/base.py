"""What every projector is: visual features [B, N, D_vision] on a square grid -> LLM embeddings [B, T, D_llm]."""

from __future__ import annotations

import math

import torch
from torch import nn


class Projector(nn.Module):
    def tokens_out(self, grid: int) -> int:
        """Visual tokens handed to the LLM for a grid x grid patch input."""
        return grid * grid


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
