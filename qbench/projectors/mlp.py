"""MLP projectors: `mlp` (LLaVA-1.5's mlp2x_gelu, Cobra's gelu-mlp) and `fused-mlp` (Cobra's fused-gelu-mlp)."""

from __future__ import annotations

import torch

from qbench.projectors.base import Projector, gelu_mlp


class MLPProjector(Projector):
    """Linear(d -> D) GELU Linear(D -> D)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.mlp = gelu_mlp([in_dim, out_dim, out_dim])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)


class FusedMLPProjector(Projector):
    """Linear(d -> 4d) GELU Linear(4d -> D) GELU Linear(D -> D), for channel-fused towers."""

    def __init__(self, in_dim: int, out_dim: int, expansion: int = 4):
        super().__init__()
        self.mlp = gelu_mlp([in_dim, expansion * in_dim, out_dim, out_dim])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)
