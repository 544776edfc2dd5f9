"""qbench's fused Mamba-1 / Mamba-2 decode step: per layer add+RMSNorm, in_proj, two small kernels, out_proj.

Between the two large projections (kept as cuBLAS GEMMs) a layer's step is
- Mamba-1: `conv_xproj` (conv state update + SiLU + x_proj, accumulated into a buffer that `add_norm` cleared) and
  `ssm_gate` (dt_proj + softplus, selective state update, D skip, SiLU(z) gate);
- Mamba-2: `conv` (conv state update + SiLU over x, B, C) and `ssm_gate_norm` (softplus(dt), state update, D skip,
  SiLU(z) gate, times the gated RMSNorm's weight, with per-head sums of squares). The norm's 1/rms is a scalar per
  sequence (one group), so it is applied after out_proj, by the next `add_norm`: out_proj is linear.
Every op exists twice with the same semantics: in PyTorch (`TORCH_OPS`, runs anywhere, tested on the CPU) and as
Triton kernels (`qbench.backbones.mamba_triton`, on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

X_DBL_DTYPE = torch.float32  # Mamba-1's x_proj output (dt rank + B + C) is accumulated in fp32


def add_norm(hidden: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, first: bool,
             gate_sumsq: torch.Tensor | None = None, gate_width: int = 1, clear: torch.Tensor | None = None
             ) -> torch.Tensor:
    """residual := hidden (+ residual unless `first`), in fp32 in place; RMSNorm(residual) * weight in weight's dtype.
    With `gate_sumsq` [B, H] (Mamba-2's per-head sums of squares over `gate_width` channels), hidden is first scaled
    by the gated norm's 1/rms (same eps);
    `clear` is zeroed (Mamba-1's x_proj accumulator)."""
    value = hidden.float()
    if gate_sumsq is not None:
        value = value * torch.rsqrt(gate_sumsq.sum(-1, keepdim=True) / gate_width + eps)
    if not first:
        value = value + residual
    residual.copy_(value)
    if clear is not None:
        clear.zero_()
    return (value * torch.rsqrt(value.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(weight.dtype)


def conv_update(x: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Shift the conv state [B, C, W] left by one, append x [B, C]; SiLU(conv + bias) in fp32 [B, C]."""
    conv_state.copy_(torch.cat([conv_state[:, :, 1:], x[:, :, None].to(conv_state.dtype)], dim=-1))
    return F.silu((conv_state.float() * weight.float()).sum(-1) + bias.float())


def conv_xproj(xz: torch.Tensor, conv_state: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor,
               x_proj_w: torch.Tensor, x_dbl: torch.Tensor) -> torch.Tensor:
    """Mamba-1: conv update of x (first half of xz) -> x_conv [B, Din] fp32; x_dbl += x_conv @ x_proj_w^T."""
    inner = conv_w.shape[0]
    x_conv = conv_update(xz[:, :inner], conv_state, conv_w, conv_b)
    x_dbl += x_conv @ x_proj_w.float().t()
    return x_conv


def softplus(dt: torch.Tensor) -> torch.Tensor:
    return torch.where(dt <= 20.0, torch.log1p(torch.exp(dt)), dt)


def ssm_gate(xz: torch.Tensor, x_conv: torch.Tensor, x_dbl: torch.Tensor, ssm_state: torch.Tensor,
             dt_w: torch.Tensor, dt_b: torch.Tensor, a_log: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Mamba-1: dt = softplus(dt_proj(x_dbl[:, :R])), state [B, Din, N] := state * exp(dt A) + dt B x; y = state C +
    D x, times SiLU(z) (second half of xz); in xz's dtype [B, Din]."""
    inner, rank, n = dt_w.shape[0], dt_w.shape[1], a_log.shape[1]
    dt = softplus(x_dbl[:, :rank] @ dt_w.float().t() + dt_b.float())
    b, c = x_dbl[:, rank:rank + n], x_dbl[:, rank + n:rank + 2 * n]
    a = -torch.exp(a_log.float())
    state = ssm_state.float() * torch.exp(dt[:, :, None] * a) + (dt * x_conv)[:, :, None] * b[:, None, :]
    ssm_state.copy_(state)
    y = (state * c[:, None, :]).sum(-1) + d.float() * x_conv
    return (y * F.silu(xz[:, inner:].float())).to(xz.dtype)


def ssm_gate_norm(zxbcdt: torch.Tensor, xbc: torch.Tensor, ssm_state: torch.Tensor, dt_bias: torch.Tensor,
                  a_log: torch.Tensor, d: torch.Tensor, norm_w: torch.Tensor, groups: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2: per head dt = softplus(dt + bias), state [B, H, P, N] := state * exp(dt A) + dt x B^T; y = state C +
    D x; g = y * SiLU(z). Returns (g * norm_w in zxbcdt's dtype [B, Din], per-head sums of squares of g [B, H])."""
    batch, heads, head_dim, n = ssm_state.shape
    inner = heads * head_dim
    z, dt = zxbcdt[:, :inner].float(), zxbcdt[:, -heads:].float()
    x = xbc[:, :inner].view(batch, heads, head_dim)
    per_group = heads // groups
    b = xbc[:, inner:inner + groups * n].view(batch, groups, n).repeat_interleave(per_group, dim=1)
    c = xbc[:, inner + groups * n:].view(batch, groups, n).repeat_interleave(per_group, dim=1)
    dt = softplus(dt + dt_bias.float())
    a = -torch.exp(a_log.float())
    state = (ssm_state.float() * torch.exp(dt * a)[:, :, None, None]
             + (dt[:, :, None] * x)[:, :, :, None] * b[:, :, None, :])
    ssm_state.copy_(state)
    y = (state * c[:, :, None, :]).sum(-1) + d.float()[:, None] * x
    g = y.reshape(batch, inner) * F.silu(z)
    sumsq = g.pow(2).view(batch, heads, head_dim).sum(-1)
    return (g * norm_w.float()).to(zxbcdt.dtype), sumsq


def conv(zxbcdt: torch.Tensor, conv_state: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor,
         inner: int) -> torch.Tensor:
    """Mamba-2: conv update of xBC (after z in zxbcdt) -> SiLU'd xBC [B, conv_dim] fp32."""
    return conv_update(zxbcdt[:, inner:inner + conv_w.shape[0]], conv_state, conv_w, conv_b)


TORCH_OPS = SimpleNamespace(add_norm=add_norm, conv_xproj=conv_xproj, ssm_gate=ssm_gate, conv=conv,
                            ssm_gate_norm=ssm_gate_norm)


@dataclass(frozen=True)
class Layer:
    """One block's tensors as the fused step reads them (views of the model's parameters, no copies)."""

    norm: torch.Tensor
    in_proj: torch.Tensor
    conv_w: torch.Tensor  # [C, W]
    conv_b: torch.Tensor
    a_log: torch.Tensor
    d: torch.Tensor
    out_proj: torch.Tensor
    x_proj: torch.Tensor | None = None  # Mamba-1
    dt_w: torch.Tensor | None = None  # Mamba-1
    dt_b: torch.Tensor | None = None  # Mamba-1 dt_proj bias, Mamba-2 dt_bias
    gate_norm: torch.Tensor | None = None  # Mamba-2


def layers_of(model: PreTrainedModel) -> list[Layer]:
    """The fused step's view of a transformers MambaForCausalLM / Mamba2ForCausalLM."""
    layers = []
    for block in model.backbone.layers:
        mixer = block.mixer
        common = {"norm": block.norm.weight, "in_proj": mixer.in_proj.weight, "conv_w": mixer.conv1d.weight[:, 0],
                  "conv_b": mixer.conv1d.bias, "a_log": mixer.A_log, "d": mixer.D, "out_proj": mixer.out_proj.weight}
        if hasattr(mixer, "x_proj"):
            layers.append(Layer(**common, x_proj=mixer.x_proj.weight, dt_w=mixer.dt_proj.weight,
                                dt_b=mixer.dt_proj.bias))
        else:
            layers.append(Layer(**common, dt_b=mixer.dt_bias, gate_norm=mixer.norm.weight))
    return layers


def check_supported(model: PreTrainedModel) -> None:
    """The fused step's limits: bias-free projections, no dt clamp, and for Mamba-2 one group in the gated norm."""
    config = model.config
    if tuple(getattr(config, "time_step_limit", (0.0, float("inf")))) != (0.0, float("inf")):
        raise ValueError("qbench's fused Mamba step does not clamp dt: time_step_limit must be (0, inf)")
    if getattr(config, "use_bias", False) or not getattr(config, "use_conv_bias", True):
        raise ValueError("qbench's fused Mamba step needs bias-free projections and a conv bias")
    if hasattr(config, "n_groups") and config.n_groups != 1:
        raise ValueError(f"qbench's fused Mamba-2 step applies the gated norm per sequence: one group, not "
                         f"{config.n_groups}")


def fused_step(model: PreTrainedModel, layers: list[Layer], ids: torch.Tensor,
               states: list[tuple[torch.Tensor, torch.Tensor]], ops: SimpleNamespace) -> torch.Tensor:
    """One token per sequence [B] through every layer, updating each (conv, ssm) state in place; logits [B, V]."""
    config = model.config
    eps = config.layer_norm_epsilon
    hidden = model.backbone.embeddings(ids)
    residual = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
    mamba1 = layers[0].x_proj is not None
    x_dbl = (torch.empty(ids.shape[0], layers[0].x_proj.shape[0], dtype=X_DBL_DTYPE, device=ids.device)
             if mamba1 else None)
    sumsq, inner = None, layers[0].out_proj.shape[1]
    for index, (layer, (conv_state, ssm_state)) in enumerate(zip(layers, states, strict=True)):
        normed = ops.add_norm(hidden, residual, layer.norm, eps, index == 0, sumsq, inner, x_dbl)
        projected = F.linear(normed, layer.in_proj)
        if mamba1:
            x_conv = ops.conv_xproj(projected, conv_state, layer.conv_w, layer.conv_b, layer.x_proj, x_dbl)
            mixed = ops.ssm_gate(projected, x_conv, x_dbl, ssm_state, layer.dt_w, layer.dt_b, layer.a_log, layer.d)
        else:
            xbc = ops.conv(projected, conv_state, layer.conv_w, layer.conv_b, inner)
            mixed, sumsq = ops.ssm_gate_norm(projected, xbc, ssm_state, layer.dt_b, layer.a_log, layer.d,
                                             layer.gate_norm, config.n_groups)
        hidden = F.linear(mixed, layer.out_proj)
    normed = ops.add_norm(hidden, residual, model.backbone.norm_f.weight, eps, False, sumsq, inner, None)
    return F.linear(normed, model.lm_head.weight)
