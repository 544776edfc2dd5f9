"""qbench's own Mamba-1 and Mamba-2 LLMs: transformers' modules and parameter names, qbench's forward.

`MambaLM` takes over a transformers MambaForCausalLM / Mamba2ForCausalLM's modules (embeddings, each block's norm and
mixer parameters, final norm, head), so every checkpoint loads by the same keys, and runs them its own way: one
forward over a chunk of tokens from a state serves prefill (from a fresh state), a question continuing an image's
prefix state, and training (every position, no state kept). Each block is add + RMSNorm (fused), in_proj, the causal
conv, the scan, the gate, out_proj; the ops come from qbench.backbones.mamba_ops (PyTorch, or mamba_ssm's scan kernels
and Triton: no causal-conv1d, no transformers code on the path). The decode state is transformers' own cache
(each layer's conv and recurrent state), so transformers' model runs on the same state (`reference`, the tests).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Cache, PretrainedConfig, PreTrainedModel


class Block(nn.Module):
    """A block over transformers' own modules: `norm` (its RMSNorm weight) and `mixer` (its parameters); `mix` is
    qbench's forward of the mixer."""

    def __init__(self, norm: nn.Module, mixer: nn.Module):
        super().__init__()
        self.norm, self.mixer = norm, mixer


class Mamba1Block(Block):
    """transformers' MambaBlock parameters: norm; mixer in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj."""

    def mix(self, normed: torch.Tensor, mask: torch.Tensor | None, conv_state: torch.Tensor | None,
            ssm_state: torch.Tensor | None, ops: SimpleNamespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixer on a normed chunk [B, L, D]: (output [B, L, D], new conv state, new SSM state in fp32). Laid out
        as mamba_ssm's Mamba does: channels first with the positions contiguous, as its scan reads them."""
        m = self.mixer
        batch, length, _ = normed.shape
        rank, n = m.time_step_rank, m.ssm_state_size
        x, z = channels_first(m.in_proj.weight @ normed.reshape(-1, normed.shape[-1]).t(), batch).chunk(2, dim=1)
        x, conv = ops.causal_conv(x, conv_state, m.conv1d.weight[:, 0], m.conv1d.bias, mask)
        dt, b, c = F.linear(x.transpose(1, 2).reshape(batch * length, -1), m.x_proj.weight).split([rank, n, n], -1)
        dt = channels_first(m.dt_proj.weight @ dt.t(), batch)  # its bias goes with the softplus, in the scan
        b, c = (t.reshape(batch, length, n).transpose(1, 2).contiguous() for t in (b, c))
        y, ssm = ops.selective_scan(x, dt, -torch.exp(m.A_log.float()), b, c, m.D, z, m.dt_proj.bias, mask, ssm_state)
        return F.linear(y.transpose(1, 2), m.out_proj.weight), conv, ssm


class Mamba2Block(Block):
    """transformers' Mamba2Block parameters: norm; mixer in_proj, conv1d, dt_bias, A_log, D, norm (gated), out_proj."""

    def mix(self, normed: torch.Tensor, mask: torch.Tensor | None, conv_state: torch.Tensor | None,
            ssm_state: torch.Tensor | None, ops: SimpleNamespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.mixer
        batch, length, _ = normed.shape
        heads, inner, groups, n = m.num_heads, m.intermediate_size, m.n_groups, m.ssm_state_size
        z, xbc, dt = F.linear(normed, m.in_proj.weight).split([inner, m.conv_dim, heads], dim=-1)
        xbc, conv = ops.causal_conv(xbc.transpose(1, 2), conv_state, m.conv1d.weight[:, 0], m.conv1d.bias, mask)
        x, b, c = xbc.transpose(1, 2).split([inner, groups * n, groups * n], dim=-1)
        y, ssm = ops.chunk_scan(x.reshape(batch, length, heads, m.head_dim).contiguous(), dt.contiguous(),
                                -torch.exp(m.A_log.float()), b.reshape(batch, length, groups, n).contiguous(),
                                c.reshape(batch, length, groups, n).contiguous(), m.D, m.dt_bias, mask, ssm_state,
                                m.chunk_size)
        y = ops.gated_norm(y.reshape(batch, length, inner), z, m.norm.weight, m.norm.variance_epsilon)
        return F.linear(y, m.out_proj.weight), conv, ssm


def channels_first(projected: torch.Tensor, batch: int) -> torch.Tensor:
    """A projection computed as [C, B * L] (weight @ tokens^T) seen as [B, C, L], positions contiguous."""
    return projected.view(projected.shape[0], batch, -1).permute(1, 0, 2)


class Stack(nn.Module):
    """transformers' `backbone`: embeddings, layers, norm_f (the same names, so the same checkpoint keys)."""

    def __init__(self, embeddings: nn.Module, layers: nn.ModuleList, norm_f: nn.Module):
        super().__init__()
        self.embeddings, self.layers, self.norm_f = embeddings, layers, norm_f


class MambaLM(nn.Module):
    """A Mamba LLM in transformers' layout, run by qbench's forward."""

    def __init__(self, reference: PreTrainedModel, block: type[Block]):
        super().__init__()
        self.config: PretrainedConfig = reference.config
        hf = reference.backbone
        layers = nn.ModuleList(block(layer.norm, layer.mixer) for layer in hf.layers)
        self.backbone = Stack(hf.embeddings, layers, hf.norm_f)
        self.lm_head = reference.lm_head

    @property
    def base_model(self) -> Stack:
        return self.backbone

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.embeddings

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, cache: Cache | None, ops: SimpleNamespace,
                keep: int = 0, fresh: bool = True) -> torch.Tensor:
        """Logits [B, keep or L, V] of a left-padded chunk [B, L, D] (`mask` [B, L]): from zero (`fresh`) or
        continuing `cache`'s states, which it updates in place; without a cache, from zero and nothing kept
        (training)."""
        hidden, residual = embeds, None
        mask = None if bool(mask.all()) else mask  # no padding: nothing to mask (one host sync per chunk)
        for index, block in enumerate(self.backbone.layers):
            normed, residual = ops.add_norm(hidden, residual, block.norm.weight, block.norm.variance_epsilon)
            states = None if cache is None else layer_state(cache, index)
            hidden, conv, ssm = block.mix(normed, mask, *((None, None) if fresh else states), ops)
            if states is not None:
                states[0].copy_(conv)  # in place: a captured graph keeps reading these tensors
                states[1].copy_(ssm)
        normed, _ = ops.add_norm(hidden, residual, self.backbone.norm_f.weight, self.backbone.norm_f.variance_epsilon)
        return self.lm_head(normed[:, -keep:]).float()


def layer_state(cache: Cache, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's (conv, SSM) state tensors in transformers' cache."""
    layer = cache.layers[index]
    return layer.conv_states[0], layer.recurrent_states[0]


def new_cache(model: MambaLM, batch: int) -> Cache:
    """transformers' cache for `batch` sequences with every layer's conv and SSM state allocated and zero (a state
    transformers' own step may continue)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    parameter = model.lm_head.weight
    for layer, block in zip(cache.layers, model.backbone.layers, strict=True):
        conv = block.mixer.conv1d.weight
        layer.lazy_initialization(conv_states=torch.zeros(batch, conv.shape[0], conv.shape[-1], dtype=parameter.dtype,
                                                          device=parameter.device),
                                  recurrent_states=torch.zeros(batch, *ssm_shape(block), dtype=parameter.dtype,
                                                               device=parameter.device))
        layer.has_previous_state[0] = True
    return cache


def ssm_shape(block: nn.Module) -> tuple[int, ...]:
    """One sequence's SSM state: Mamba-1 [D_inner, N], Mamba-2 [heads, head_dim, N]."""
    m = block.mixer
    if isinstance(block, Mamba1Block):
        return m.intermediate_size, m.ssm_state_size
    return m.num_heads, m.head_dim, m.ssm_state_size
