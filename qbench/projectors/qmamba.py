"""Q-Mamba's query-based projector: learnable queries; blocks of [Mamba over the queries -> cross-attention
to the visual features -> FFN], pre-LayerNorm residual sub-layers; optional local window mask."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer

from qbench.projectors.base import Projector


def local_window_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """[Q, K] bool, True where attention is blocked: the raster-ordered keys split into Q contiguous chunks."""
    if keys < queries:
        raise ValueError(f"a local mask needs at least as many visual tokens ({keys}) as queries ({queries})")
    owner = torch.arange(keys, device=device) * queries // keys  # chunk index of each key
    return owner[None, :] != torch.arange(queries, device=device)[:, None]


class QueryBlock(nn.Module):
    def __init__(self, width: int, visual_dim: int, heads: int, ffn_mult: int, state: int):
        super().__init__()
        self.mamba_norm = nn.LayerNorm(width)
        config = MambaConfig(hidden_size=width, state_size=state, expand=2, conv_kernel=4,
                             time_step_rank=math.ceil(width / 16), num_hidden_layers=1)
        self.mamba = MambaMixer(config, layer_idx=0)
        self.cross_norm = nn.LayerNorm(width)
        self.cross_attention = nn.MultiheadAttention(width, heads, kdim=visual_dim, vdim=visual_dim, batch_first=True)
        self.ffn_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_mult * width), nn.GELU(), nn.Linear(ffn_mult * width, width))

    def forward(self, queries: torch.Tensor, visual: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        queries = queries + self.mamba(self.mamba_norm(queries))
        attended, _ = self.cross_attention(self.cross_norm(queries), visual, visual, attn_mask=mask, need_weights=False)
        queries = queries + attended
        return queries + self.ffn(self.ffn_norm(queries))


class QMambaProjector(Projector):
    tiny_options: ClassVar[dict[str, Any]] = {"queries": 16, "depth": 2, "heads": 4}

    def __init__(self, in_dim: int, out_dim: int, queries: int = 256, depth: int = 2, heads: int = 16,
                 ffn_mult: int = 4, state: int = 16, local_mask: bool = False):
        super().__init__()
        self.num_queries = queries
        self.local_mask = local_mask
        self.queries = nn.Parameter(torch.randn(queries, out_dim) * 0.02)
        self.visual_norm = nn.LayerNorm(in_dim)
        self.blocks = nn.ModuleList(QueryBlock(out_dim, in_dim, heads, ffn_mult, state) for _ in range(depth))
        self.norm = nn.LayerNorm(out_dim)

    def tokens_out(self, grid: int) -> int:
        return self.num_queries

    @classmethod
    def options_for_tokens(cls, options: dict[str, Any], tokens: int) -> dict[str, Any]:
        return {**options, "queries": tokens}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        visual = self.visual_norm(features)
        mask = local_window_mask(self.num_queries, visual.shape[1], visual.device) if self.local_mask else None
        queries = self.queries.to(visual.dtype).expand(visual.shape[0], -1, -1)
        for block in self.blocks:
            queries = block(queries, visual, mask)
        return self.norm(queries)
