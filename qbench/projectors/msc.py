"""ML-Mamba's connector: Linear+GELU, the Mamba-2 Scan Connector (bidirectional Mamba-2 blocks), a fused MLP."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from qbench.projectors.base import Projector, gelu_mlp


def segment_sums(x: torch.Tensor) -> torch.Tensor:
    """[..., T] -> [..., T, T] with out[i, j] = x[j+1] + ... + x[i] below the diagonal, -inf above it."""
    length = x.shape[-1]
    x = x[..., None].expand(*x.shape, length)
    x = x.masked_fill(~torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), -1), 0)
    sums = torch.cumsum(x, dim=-2)
    return sums.masked_fill(~torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device)), -torch.inf)


def ssd_scan(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, chunk: int):
    """Mamba-2's state-space-duality scan in plain PyTorch, chunked.

    x [B, L, H, P], dt [B, L, H] (after softplus), a [H] (negative), b and c [B, L, N] (one group) -> y [B, L, H, P].
    """
    batch, length, heads, head_dim = x.shape
    pad = (-length) % chunk
    if pad:  # zeros at the end of a causal scan change nothing before them
        x, dt, b, c = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, b, c))
    chunks = x.shape[1] // chunk
    x = (x * dt[..., None]).reshape(batch, chunks, chunk, heads, head_dim)
    decay = (dt * a).reshape(batch, chunks, chunk, heads).permute(0, 3, 1, 2)  # [B, H, C, l]
    b = b.reshape(batch, chunks, chunk, -1)
    c = c.reshape(batch, chunks, chunk, -1)
    cumulative = torch.cumsum(decay, dim=-1)
    within = torch.exp(segment_sums(decay))  # [B, H, C, l, s]
    y_diag = torch.einsum("bcln,bcsn,bhcls,bcshp->bclhp", c, b, within, x)
    to_end = torch.exp(cumulative[..., -1:] - cumulative)
    states = torch.einsum("bcln,bhcl,bclhp->bchpn", b, to_end, x)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    across = torch.exp(segment_sums(F.pad(cumulative[..., -1], (1, 0))))
    states = torch.einsum("bhzc,bchpn->bzhpn", across, states)[:, :-1]
    y_off = torch.einsum("bcln,bchpn,bhcl->bclhp", c, states, torch.exp(cumulative))
    return (y_diag + y_off).reshape(batch, chunks * chunk, heads, head_dim)[:, :length]


class GatedRMSNorm(nn.Module):
    """Mamba-2's norm: RMSNorm(y * SiLU(z))."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = (y * F.silu(z)).float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(self.weight.dtype)


class ScanDirection(nn.Module):
    """The per-direction parameters of a bidirectional Mamba-2 layer: causal conv, dt bias, A, D."""

    def __init__(self, channels: int, heads: int, conv: int):
        super().__init__()
        self.conv1d = nn.Conv1d(channels, channels, conv, groups=channels, padding=conv - 1)
        self.dt_bias = nn.Parameter(torch.log(torch.expm1(torch.full((heads,), 0.01))))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(heads))


class BiMamba2(nn.Module):
    """One shared in_proj, gated norm and out_proj; a forward and a backward Mamba-2 scan, each gated-normed
    (as the released kernel call does per direction), then averaged before out_proj."""

    def __init__(self, dim: int, state: int = 128, conv: int = 4, expand: int = 2, head_dim: int = 64, chunk: int = 256):
        super().__init__()
        self.inner, self.state, self.head_dim, self.chunk = expand * dim, state, head_dim, chunk
        self.heads = self.inner // head_dim
        conv_channels = self.inner + 2 * state
        self.in_proj = nn.Linear(dim, 2 * self.inner + 2 * state + self.heads, bias=False)
        self.forward_scan = ScanDirection(conv_channels, self.heads, conv)
        self.backward_scan = ScanDirection(conv_channels, self.heads, conv)
        self.norm = GatedRMSNorm(self.inner)
        self.out_proj = nn.Linear(self.inner, dim, bias=False)

    def scan(self, direction: ScanDirection, xbc: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        length = xbc.shape[1]
        xbc = F.silu(direction.conv1d(xbc.transpose(1, 2))[..., :length].transpose(1, 2))
        x, b, c = xbc.split([self.inner, self.state, self.state], dim=-1)
        x = x.reshape(*x.shape[:2], self.heads, self.head_dim)
        dt = F.softplus(dt + direction.dt_bias)
        a = -torch.exp(direction.A_log.float())
        y = ssd_scan(x.float(), dt.float(), a, b.float(), c.float(), self.chunk)
        y = y + x.float() * direction.D.float()[:, None]
        return y.reshape(*y.shape[:2], self.inner).to(xbc.dtype)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        z, xbc, dt = self.in_proj(hidden).split([self.inner, self.inner + 2 * self.state, self.heads], dim=-1)
        forward = self.scan(self.forward_scan, xbc, dt)
        backward = self.scan(self.backward_scan, xbc.flip(1), dt.flip(1)).flip(1)
        return self.out_proj((self.norm(forward, z) + self.norm(backward, z)) / 2)


class SwiGLU(nn.Module):
    """w3(SiLU(w1 x) * w2 x), biases on (the released block uses nn.Linear defaults)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class ScanBlock(nn.Module):
    """h = h + BiMamba2(h); h = h + SwiGLU(LayerNorm(h))."""

    def __init__(self, dim: int, state: int, head_dim: int):
        super().__init__()
        self.mixer = BiMamba2(dim, state=state, head_dim=head_dim)
        self.norm = nn.LayerNorm(dim)
        self.ffn = SwiGLU(dim, dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.mixer(hidden)
        return hidden + self.ffn(self.norm(hidden))


class MSCProjector(Projector):
    tiny_options: ClassVar[dict[str, Any]] = {"state": 16, "head_dim": 16}

    def __init__(self, in_dim: int, out_dim: int, blocks: int = 2, state: int = 128, head_dim: int = 64):
        super().__init__()
        self.mlp = gelu_mlp([in_dim, out_dim], final_gelu=True)
        self.blocks = nn.ModuleList(ScanBlock(out_dim, state, head_dim) for _ in range(blocks))
        self.norm = nn.LayerNorm(out_dim)
        self.projector = gelu_mlp([out_dim, 4 * out_dim, out_dim, out_dim])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.mlp(features)
        for block in self.blocks:
            hidden = block(hidden)
        return self.projector(self.norm(hidden))
