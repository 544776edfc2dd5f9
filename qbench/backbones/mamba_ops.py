"""The ops of qbench's Mamba layers, twice with one semantics: in PyTorch (`TORCH_OPS`, the reference: runs anywhere,
sequential scans) and on kernels (`KERNEL_OPS`: mamba_ssm's selective scan and chunked SSD scan, its Triton fused
add + RMSNorm and gated RMSNorm, and qbench's Triton Mamba-1 scan from a given state). Neither needs causal-conv1d:
the causal conv is PyTorch's grouped conv1d in both.

Shapes: Mamba-1 channels-first, x, dt, z [B, D, L], B and C [B, N, L], its state [B, D, N]; Mamba-2 x [B, L, H, P],
dt [B, L, H], B and C [B, L, G, N], its state [B, H, P, N]. `mask` [B, L] is 1 at real tokens, 0 at (left) padding
(None: no padding): a padded position takes no input and leaves the state as it was (its dt is zero), so a chunk
continues a state that a shorter prompt left. Scans return (y, final state); the state comes in (None: zero) and goes out in fp32.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F


def add_norm(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """residual := hidden + residual (hidden alone when None) in fp32; (RMSNorm(residual) * weight in weight's dtype,
    residual)."""
    residual = hidden.float() if residual is None else hidden.float() + residual
    normed = residual * torch.rsqrt(residual.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(weight.dtype), residual


def gated_norm(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Mamba-2's RMSNorm(y * SiLU(z)) * weight over the last axis (transformers' norm: one group); in y's dtype."""
    gated = y.float() * F.silu(z.float())
    return weight * (gated * torch.rsqrt(gated.pow(2).mean(-1, keepdim=True) + eps)).to(y.dtype)


def causal_conv(x: torch.Tensor, state: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor | None,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv of a left-padded chunk x [B, C, L] continuing a conv state [B, C, W] (the last W inputs;
    None: zeros) placed right before each row's first real token; SiLU'd and zero at padding. Returns (out in x's
    dtype, the new state: the last W inputs of each row)."""
    width, length, channels = weight.shape[-1], x.shape[-1], x.shape[1]
    if mask is not None:
        x = x * mask[:, None, :].to(x.dtype)
    if state is None:
        out = F.conv1d(x.to(weight.dtype), weight[:, None, :], bias, padding=width - 1, groups=channels)[..., :length]
        line = x if length >= width else F.pad(x, (width - length, 0))
    else:
        line = torch.cat([state.to(x.dtype), x], dim=-1) if mask is None else placed(x, state, mask)
        out = F.conv1d(line[..., 1:].to(weight.dtype), weight[:, None, :], bias, groups=channels)
    out = F.silu(out)
    if mask is not None:
        out = out * mask[:, None, :].to(out.dtype)
    return out.to(x.dtype), line[..., -width:]


def placed(x: torch.Tensor, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, C, W + L]: the chunk x after W slots, each row's conv state written right before its first real token
    (over zeros: the leading slots and the row's padding)."""
    width, length = state.shape[-1], x.shape[-1]
    line = F.pad(x, (width, 0))  # slot W + j holds chunk position j
    starts = length - mask.sum(-1)  # each row's first real position in the chunk
    at = (starts[:, None] + torch.arange(width, device=x.device))[:, None, :].expand(-1, x.shape[1], -1)
    return line.scatter(-1, at, state.to(line.dtype))


def softplus_dt(dt: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softplus(dt + bias) in fp32 for dt [B, L, X], zero at padding (there the state neither decays nor takes input)."""
    dt = F.softplus(dt.float() + bias.float())
    return dt if mask is None else dt * mask[..., None].to(torch.float32)


def selective_scan(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                   d: torch.Tensor, z: torch.Tensor, dt_bias: torch.Tensor, mask: torch.Tensor | None,
                   state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1: per position, state := state * exp(dt A) + dt B x; y = state C + D x, times SiLU(z). dt [B, D, L] is
    dt_proj's output (before its bias and softplus). y in x's dtype [B, D, L]; the final state [B, D, N] in fp32."""
    dt = softplus_dt(dt.transpose(1, 2), dt_bias, mask).transpose(1, 2)
    xf, bf, cf = x.float(), b.float(), c.float()
    h = torch.zeros(x.shape[0], x.shape[1], a.shape[1], device=x.device) if state is None else state.float()
    ys = []
    for t in range(x.shape[-1]):
        h = h * torch.exp(dt[:, :, t, None] * a) + (dt[:, :, t] * xf[:, :, t])[:, :, None] * bf[:, None, :, t]
        ys.append((h * cf[:, None, :, t]).sum(-1))
    y = (torch.stack(ys, dim=-1) + d.float()[:, None] * xf) * F.silu(z.float())
    return y.to(x.dtype), h


def chunk_scan(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
               dt_bias: torch.Tensor, mask: torch.Tensor | None, state: torch.Tensor | None,
               chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2: per head, state [P, N] := state * exp(dt A) + dt x B^T; y = state C + D x (the chunked SSD scan's
    result, here one position at a time; `chunk` is the kernel's). y in x's dtype [B, L, H, P]; final state fp32."""
    heads, groups = x.shape[2], b.shape[2]
    dt = softplus_dt(dt, dt_bias, mask)
    xf = x.float()
    bf, cf = (t.float().repeat_interleave(heads // groups, dim=2) for t in (b, c))
    h = (torch.zeros(x.shape[0], heads, x.shape[3], b.shape[3], device=x.device) if state is None
         else state.float())
    ys = []
    for t in range(x.shape[1]):
        step = dt[:, t]  # [B, H]
        h = h * torch.exp(step * a)[:, :, None, None] + (step[:, :, None] * xf[:, t])[..., None] * bf[:, t, :, None]
        ys.append((h * cf[:, t, :, None]).sum(-1))
    y = torch.stack(ys, dim=1) + d.float()[:, None] * xf
    return y.to(x.dtype), h


TORCH_OPS = SimpleNamespace(name="pytorch", add_norm=add_norm, gated_norm=gated_norm, causal_conv=causal_conv,
                            selective_scan=selective_scan, chunk_scan=chunk_scan)


# --- the same ops on kernels ----------------------------------------------------------------------------------------
def kernel_add_norm(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    from mamba_ssm.ops.triton.layer_norm import rms_norm_fn

    normed, residual = rms_norm_fn(hidden, weight, None, residual=residual, prenorm=True, residual_in_fp32=True,
                                   eps=eps)
    return normed, residual


def kernel_gated_norm(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    from mamba_ssm.ops.triton.layernorm_gated import rmsnorm_fn

    return rmsnorm_fn(y, weight, None, z=z, eps=eps, group_size=None, norm_before_gate=False)


def kernel_selective_scan(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                          d: torch.Tensor, z: torch.Tensor, dt_bias: torch.Tensor, mask: torch.Tensor | None,
                          state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """From a zero state mamba_ssm's selective scan (with its backward; padding needs nothing there: x is zero and
    the state stays zero); from a given state qbench's Triton scan (inference)."""
    if state is None:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        y, final = selective_scan_fn(x, dt, a, b, c, d.float(), z=z, delta_bias=dt_bias.float(), delta_softplus=True,
                                     return_last_state=True)
        return y, final.float()
    from qbench.backbones.mamba_triton import scan_from_state

    return scan_from_state(x, softplus_dt(dt.transpose(1, 2), dt_bias, mask).transpose(1, 2), a, b, c, d, z, state)


def kernel_chunk_scan(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                      d: torch.Tensor, dt_bias: torch.Tensor, mask: torch.Tensor | None, state: torch.Tensor | None,
                      chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    y, final = mamba_chunk_scan_combined(x, softplus_dt(dt, dt_bias, mask), a, b, c, chunk, D=d.float(),
                                         initial_states=None if state is None else state.float(),
                                         return_final_states=True)
    return y, final.float()


KERNEL_OPS = SimpleNamespace(name="mamba_ssm scans + Triton", add_norm=kernel_add_norm, gated_norm=kernel_gated_norm,
                             causal_conv=causal_conv, selective_scan=kernel_selective_scan,
                             chunk_scan=kernel_chunk_scan)
