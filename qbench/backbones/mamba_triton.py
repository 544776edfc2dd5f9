"""The fused Mamba decode step's ops as Triton kernels, same semantics as their PyTorch twins in mamba_step; and the
Mamba-1 scan of a chunk from a given state, the twin of mamba_ops.selective_scan.

Per layer four launches besides the two cuBLAS projections: add_norm, then conv_xproj + ssm_gate (Mamba-1) or
conv + ssm_gate_norm (Mamba-2). A program of Mamba-1's two kernels loops over up to ROWS sequences, so its weight tile
(x_proj, dt_proj) is read once per ROWS sequences, while the grid still spreads a large batch over the GPU. Mamba-1's x_proj sums over all channels: programs add their
partial sums into an fp32 buffer with atomics (add_norm zeroed it one launch before).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import triton
import triton.language as tl

CHANNELS = 32  # channels per program in the Mamba-1 kernels
CONV_CHANNELS = 128  # channels per program in the Mamba-2 conv
NUM_WARPS = 4
ROWS = 4  # sequences per program in the Mamba-1 kernels


@triton.jit
def _silu(x):
    return x / (1.0 + tl.exp(-x))


@triton.jit
def _softplus(x):
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def _add_norm_kernel(hidden, residual, weight, out, gate_sumsq, clear, width, heads, clear_width, eps, gate_width,
                     FIRST: tl.constexpr, GATED: tl.constexpr, CLEAR: tl.constexpr, BLOCK: tl.constexpr,
                     HEADS: tl.constexpr, CLEAR_BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < width
    value = tl.load(hidden + row * width + cols, mask=mask, other=0.0).to(tl.float32)
    if GATED:
        head = tl.arange(0, HEADS)
        sumsq = tl.load(gate_sumsq + row * heads + head, mask=head < heads, other=0.0)
        value = value * (1.0 / tl.sqrt(tl.sum(sumsq, 0) / gate_width + eps))
    if not FIRST:
        value += tl.load(residual + row * width + cols, mask=mask, other=0.0)
    tl.store(residual + row * width + cols, value, mask=mask)
    if CLEAR:
        spots = tl.arange(0, CLEAR_BLOCK)
        tl.store(clear + row * clear_width + spots, tl.zeros([CLEAR_BLOCK], tl.float32), mask=spots < clear_width)
    rstd = 1.0 / tl.sqrt(tl.sum(value * value, 0) / width + eps)
    w = tl.load(weight + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out + row * width + cols, (value * rstd * w).to(out.dtype.element_ty), mask=mask)


def add_norm(hidden: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, first: bool,
             gate_sumsq: torch.Tensor | None = None, gate_width: int = 1, clear: torch.Tensor | None = None
             ) -> torch.Tensor:
    batch, width = hidden.shape
    out = torch.empty(hidden.shape, dtype=weight.dtype, device=hidden.device)
    heads = gate_sumsq.shape[1] if gate_sumsq is not None else 1
    clear_width = clear.shape[1] if clear is not None else 1
    _add_norm_kernel[(batch,)](
        hidden, residual, weight, out, gate_sumsq if gate_sumsq is not None else residual,
        clear if clear is not None else residual, width, heads, clear_width, eps, float(gate_width),
        FIRST=first, GATED=gate_sumsq is not None, CLEAR=clear is not None, BLOCK=triton.next_power_of_2(width),
        HEADS=triton.next_power_of_2(heads), CLEAR_BLOCK=triton.next_power_of_2(clear_width), num_warps=8)
    return out


@triton.jit
def _conv_tile(x_ptr, state, weight, bias, chan, mask, stride_sc, stride_sw, WIDTH: tl.constexpr):
    """Shift one row's conv state [C, W] left, append x; store it; SiLU(conv + bias) in fp32 [C]."""
    taps = tl.arange(0, WIDTH)
    both = mask[:, None] & (taps[None, :] < WIDTH)
    x = tl.load(x_ptr + chan, mask=mask, other=0.0).to(tl.float32)
    shifted = tl.load(state + chan[:, None] * stride_sc + (taps[None, :] + 1) * stride_sw,
                      mask=both & (taps[None, :] < WIDTH - 1), other=0.0).to(tl.float32)
    window = tl.where(taps[None, :] == WIDTH - 1, x[:, None], shifted)
    tl.store(state + chan[:, None] * stride_sc + taps[None, :] * stride_sw, window.to(state.dtype.element_ty),
             mask=both)
    window = window.to(state.dtype.element_ty).to(tl.float32)
    return _silu(tl.sum(window * weight, 1) + bias)


@triton.jit
def _conv_xproj_kernel(xz, conv_state, conv_w, conv_b, x_proj, x_conv, x_dbl, batch, inner, rank_n,
                       stride_xz, stride_sb, stride_sc, stride_sw, stride_cw,
                       ROWS: tl.constexpr, WIDTH: tl.constexpr, BLOCK: tl.constexpr, OUT: tl.constexpr):
    chan = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = chan < inner
    taps = tl.arange(0, WIDTH)
    weight = tl.load(conv_w + chan[:, None] * stride_cw + taps[None, :], mask=mask[:, None], other=0.0).to(tl.float32)
    bias = tl.load(conv_b + chan, mask=mask, other=0.0).to(tl.float32)
    outs = tl.arange(0, OUT)
    proj = tl.load(x_proj + outs[:, None] * inner + chan[None, :], mask=(outs[:, None] < rank_n) & mask[None, :],
                   other=0.0).to(tl.float32)
    for offset in range(ROWS):
        row = tl.program_id(1) * ROWS + offset
        live = mask & (row < batch)
        x = _conv_tile(xz + row * stride_xz, conv_state + row * stride_sb, weight, bias, chan, live, stride_sc,
                       stride_sw, WIDTH)
        x = tl.where(live, x, 0.0)
        tl.store(x_conv + row * inner + chan, x, mask=live)
        tl.atomic_add(x_dbl + row * rank_n + outs, tl.sum(proj * x[None, :], 1), mask=(outs < rank_n) & (row < batch))


def conv_xproj(xz: torch.Tensor, conv_state: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor,
               x_proj_w: torch.Tensor, x_dbl: torch.Tensor) -> torch.Tensor:
    batch = xz.shape[0]
    inner, width = conv_w.shape
    x_conv = torch.empty(batch, inner, dtype=torch.float32, device=xz.device)
    rank_n = x_proj_w.shape[0]
    rows = min(batch, ROWS)
    _conv_xproj_kernel[(triton.cdiv(inner, CHANNELS), triton.cdiv(batch, rows))](
        xz, conv_state, conv_w, conv_b, x_proj_w, x_conv, x_dbl, batch, inner, rank_n, xz.stride(0),
        conv_state.stride(0), conv_state.stride(1), conv_state.stride(2), conv_w.stride(0),
        ROWS=rows, WIDTH=width, BLOCK=CHANNELS, OUT=triton.next_power_of_2(rank_n), num_warps=NUM_WARPS)
    return x_conv


@triton.jit
def _ssm_gate_kernel(xz, x_conv, x_dbl, ssm_state, dt_w, dt_b, a_log, d, y, batch, inner, rank, n,
                     stride_xz, stride_sb, stride_sc, stride_sn,
                     ROWS: tl.constexpr, BLOCK: tl.constexpr, RANK: tl.constexpr, STATE: tl.constexpr):
    chan = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = chan < inner
    ranks = tl.arange(0, RANK)
    states = tl.arange(0, STATE)
    dt_weight = tl.load(dt_w + chan[:, None] * rank + ranks[None, :], mask=mask[:, None] & (ranks[None, :] < rank),
                        other=0.0).to(tl.float32)
    dt_bias = tl.load(dt_b + chan, mask=mask, other=0.0).to(tl.float32)
    both = mask[:, None] & (states[None, :] < n)
    a = -tl.exp(tl.load(a_log + chan[:, None] * n + states[None, :], mask=both, other=0.0).to(tl.float32))
    skip = tl.load(d + chan, mask=mask, other=0.0).to(tl.float32)
    rank_n = rank + 2 * n
    for offset in range(ROWS):
        row = tl.program_id(1) * ROWS + offset
        live = row < batch
        dt_in = tl.load(x_dbl + row * rank_n + ranks, mask=(ranks < rank) & live, other=0.0)
        dt = _softplus(tl.sum(dt_weight * dt_in[None, :], 1) + dt_bias)
        b = tl.load(x_dbl + row * rank_n + rank + states, mask=(states < n) & live, other=0.0)
        c = tl.load(x_dbl + row * rank_n + rank + n + states, mask=(states < n) & live, other=0.0)
        x = tl.load(x_conv + row * inner + chan, mask=mask & live, other=0.0)
        pointers = ssm_state + row * stride_sb + chan[:, None] * stride_sc + states[None, :] * stride_sn
        state = tl.load(pointers, mask=both & live, other=0.0).to(tl.float32)
        state = state * tl.exp(dt[:, None] * a) + (dt * x)[:, None] * b[None, :]
        tl.store(pointers, state.to(ssm_state.dtype.element_ty), mask=both & live)
        out = tl.sum(state * c[None, :], 1) + skip * x
        z = tl.load(xz + row * stride_xz + inner + chan, mask=mask & live, other=0.0).to(tl.float32)
        tl.store(y + row * inner + chan, (out * _silu(z)).to(y.dtype.element_ty), mask=mask & live)


def ssm_gate(xz: torch.Tensor, x_conv: torch.Tensor, x_dbl: torch.Tensor, ssm_state: torch.Tensor,
             dt_w: torch.Tensor, dt_b: torch.Tensor, a_log: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    batch = xz.shape[0]
    inner, rank = dt_w.shape
    n = a_log.shape[1]
    y = torch.empty(batch, inner, dtype=xz.dtype, device=xz.device)
    rows = min(batch, ROWS)
    _ssm_gate_kernel[(triton.cdiv(inner, CHANNELS), triton.cdiv(batch, rows))](
        xz, x_conv, x_dbl, ssm_state, dt_w, dt_b, a_log, d, y, batch, inner, rank, n, xz.stride(0),
        ssm_state.stride(0), ssm_state.stride(1), ssm_state.stride(2),
        ROWS=rows, BLOCK=CHANNELS, RANK=triton.next_power_of_2(rank), STATE=triton.next_power_of_2(n), num_warps=NUM_WARPS)
    return y


@triton.jit
def _conv_kernel(zxbcdt, conv_state, conv_w, conv_b, out, channels, offset, stride_in, stride_sb, stride_sc,
                 stride_sw, stride_cw, WIDTH: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(1)
    chan = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = chan < channels
    taps = tl.arange(0, WIDTH)
    weight = tl.load(conv_w + chan[:, None] * stride_cw + taps[None, :], mask=mask[:, None], other=0.0).to(tl.float32)
    bias = tl.load(conv_b + chan, mask=mask, other=0.0).to(tl.float32)
    x = _conv_tile(zxbcdt + row * stride_in + offset, conv_state + row * stride_sb, weight, bias, chan, mask,
                   stride_sc, stride_sw, WIDTH)
    tl.store(out + row * channels + chan, x, mask=mask)


def conv(zxbcdt: torch.Tensor, conv_state: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor,
         inner: int) -> torch.Tensor:
    batch = zxbcdt.shape[0]
    channels, width = conv_w.shape
    out = torch.empty(batch, channels, dtype=torch.float32, device=zxbcdt.device)
    _conv_kernel[(triton.cdiv(channels, CONV_CHANNELS), batch)](
        zxbcdt, conv_state, conv_w, conv_b, out, channels, inner, zxbcdt.stride(0), conv_state.stride(0),
        conv_state.stride(1), conv_state.stride(2), conv_w.stride(0), WIDTH=width, BLOCK=CONV_CHANNELS,
        num_warps=NUM_WARPS)
    return out


@triton.jit
def _ssm_gate_norm_kernel(zxbcdt, xbc, ssm_state, dt_bias, a_log, d, norm_w, out, sumsq, heads, head_dim, n,
                          per_group, groups, stride_in, stride_sb, stride_sh, stride_sp, stride_sn,
                          HEAD_DIM: tl.constexpr, STATE: tl.constexpr):
    head = tl.program_id(0)
    row = tl.program_id(1)
    inner = heads * head_dim
    channels = inner + 2 * groups * n
    group = head // per_group
    dims = tl.arange(0, HEAD_DIM)
    states = tl.arange(0, STATE)
    dmask = dims < head_dim
    smask = states < n
    chan = head * head_dim + dims
    dt = tl.load(zxbcdt + row * stride_in + inner + channels + head).to(tl.float32)
    dt = _softplus(dt + tl.load(dt_bias + head).to(tl.float32))
    decay = tl.exp(dt * -tl.exp(tl.load(a_log + head).to(tl.float32)))
    x = tl.load(xbc + row * channels + chan, mask=dmask, other=0.0)
    b = tl.load(xbc + row * channels + inner + group * n + states, mask=smask, other=0.0)
    c = tl.load(xbc + row * channels + inner + groups * n + group * n + states, mask=smask, other=0.0)
    both = dmask[:, None] & smask[None, :]
    pointers = ssm_state + row * stride_sb + head * stride_sh + dims[:, None] * stride_sp + states[None, :] * stride_sn
    state = tl.load(pointers, mask=both, other=0.0).to(tl.float32)
    state = state * decay + (dt * x)[:, None] * b[None, :]
    tl.store(pointers, state.to(ssm_state.dtype.element_ty), mask=both)
    y = tl.sum(state * c[None, :], 1) + tl.load(d + head).to(tl.float32) * x
    z = tl.load(zxbcdt + row * stride_in + chan, mask=dmask, other=0.0).to(tl.float32)
    gated = tl.where(dmask, y * _silu(z), 0.0)
    tl.store(sumsq + row * heads + head, tl.sum(gated * gated, 0))
    w = tl.load(norm_w + chan, mask=dmask, other=0.0).to(tl.float32)
    tl.store(out + row * inner + chan, (gated * w).to(out.dtype.element_ty), mask=dmask)


def ssm_gate_norm(zxbcdt: torch.Tensor, xbc: torch.Tensor, ssm_state: torch.Tensor, dt_bias: torch.Tensor,
                  a_log: torch.Tensor, d: torch.Tensor, norm_w: torch.Tensor, groups: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    batch, heads, head_dim, n = ssm_state.shape
    out = torch.empty(batch, heads * head_dim, dtype=zxbcdt.dtype, device=zxbcdt.device)
    sumsq = torch.empty(batch, heads, dtype=torch.float32, device=zxbcdt.device)
    _ssm_gate_norm_kernel[(heads, batch)](
        zxbcdt, xbc, ssm_state, dt_bias, a_log, d, norm_w, out, sumsq, heads, head_dim, n, heads // groups, groups,
        zxbcdt.stride(0), *ssm_state.stride(), HEAD_DIM=triton.next_power_of_2(head_dim),
        STATE=triton.next_power_of_2(n), num_warps=NUM_WARPS)
    return out, sumsq


TRITON_OPS = SimpleNamespace(add_norm=add_norm, conv_xproj=conv_xproj, ssm_gate=ssm_gate, conv=conv,
                             ssm_gate_norm=ssm_gate_norm)


SCAN_CHANNELS = 32  # channels per program of the scan from a state


@triton.jit
def _scan_kernel(x, dt, a, b, c, d, z, state, y, final, inner, n, length,
                 sx_b, sx_d, sx_l, sdt_b, sdt_d, sdt_l, sb_b, sb_n, sb_l, sc_b, sc_n, sc_l, sz_b, sz_d, sz_l,
                 ss_b, ss_d, sy_b, sy_d, sy_l, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """One sequence x BLOCK_D channels: the state [BLOCK_D, N] in registers, the chunk's positions in order."""
    row = tl.program_id(0)
    chan = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    spot = tl.arange(0, BLOCK_N)
    live, both = chan < inner, (chan[:, None] < inner) & (spot[None, :] < n)
    a_tile = tl.load(a + chan[:, None] * n + spot[None, :], mask=both, other=0.0).to(tl.float32)
    skip = tl.load(d + chan, mask=live, other=0.0).to(tl.float32)
    h = tl.load(state + row * ss_b + chan[:, None] * ss_d + spot[None, :], mask=both, other=0.0).to(tl.float32)
    t = 0
    while t < length:  # a while loop: Triton's interpreter cannot range over a runtime count
        xt = tl.load(x + row * sx_b + chan * sx_d + t * sx_l, mask=live, other=0.0).to(tl.float32)
        step = tl.load(dt + row * sdt_b + chan * sdt_d + t * sdt_l, mask=live, other=0.0).to(tl.float32)
        zt = tl.load(z + row * sz_b + chan * sz_d + t * sz_l, mask=live, other=0.0).to(tl.float32)
        bt = tl.load(b + row * sb_b + spot * sb_n + t * sb_l, mask=spot < n, other=0.0).to(tl.float32)
        ct = tl.load(c + row * sc_b + spot * sc_n + t * sc_l, mask=spot < n, other=0.0).to(tl.float32)
        h = h * tl.exp(step[:, None] * a_tile) + (step * xt)[:, None] * bt[None, :]
        out = (tl.sum(h * ct[None, :], 1) + skip * xt) * _silu(zt)
        tl.store(y + row * sy_b + chan * sy_d + t * sy_l, out.to(y.dtype.element_ty), mask=live)
        t += 1
    tl.store(final + row * inner * n + chan[:, None] * n + spot[None, :], h, mask=both)


def scan_from_state(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                    d: torch.Tensor, z: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1's scan of a chunk from `state` [B, D, N]: x, z [B, D, L]; dt [B, D, L] after bias and softplus (zero
    at padding); A [D, N] fp32; B, C [B, N, L]. Returns y [B, D, L] in x's dtype and the final state in fp32."""
    batch, inner, length = x.shape
    n = a.shape[1]
    a, d = a.float().contiguous(), d.contiguous()
    state = state.contiguous()
    y = torch.empty_like(x)
    final = torch.empty(batch, inner, n, dtype=torch.float32, device=x.device)
    grid = (batch, triton.cdiv(inner, SCAN_CHANNELS))
    _scan_kernel[grid](x, dt, a, b, c, d, z, state, y, final, inner, n, length, *x.stride(), *dt.stride(),
                       *b.stride(), *c.stride(), *z.stride(), state.stride(0), state.stride(1), *y.stride(),
                       BLOCK_D=SCAN_CHANNELS, BLOCK_N=triton.next_power_of_2(n), num_warps=NUM_WARPS)
    return y, final
