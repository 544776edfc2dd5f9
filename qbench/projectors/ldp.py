"""LDPv2 (Cobra-LDP's fused-ldpnet): MLP, average-pool the patch grid, depthwise-conv position encoding."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from qbench.projectors.base import Projector, gelu_mlp, square_grid, square_side


class LDPProjector(Projector):
    tiny_options: ClassVar[dict[str, Any]] = {"pooled_grid": 4}

    def __init__(self, in_dim: int, out_dim: int, pooled_grid: int = 14, expansion: int = 4):
        super().__init__()
        self.pooled_grid = pooled_grid
        self.mlp = gelu_mlp([in_dim, expansion * in_dim, out_dim])
        self.pool = nn.AdaptiveAvgPool2d(pooled_grid)
        self.peg = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, groups=out_dim, bias=True)

    def tokens_out(self, grid: int) -> int:
        return self.pooled_grid**2  # adaptive pooling lands on the pooled grid whatever the input grid

    @classmethod
    def options_for_tokens(cls, options: dict[str, Any], tokens: int) -> dict[str, Any]:
        return {**options, "pooled_grid": square_side(tokens, "ldp")}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        side = square_grid(features)
        hidden = self.mlp(features)  # [B, N, D]
        batch, _, dim = hidden.shape
        grid = hidden.transpose(1, 2).reshape(batch, dim, side, side)
        grid = self.pool(grid)
        grid = grid + self.peg(grid)
        return grid.flatten(2).transpose(1, 2)
