"""Falcon-H1 LLMs (TII's Falcon-H1-3B) as transformers FalconH1ForCausalLM: in every layer an attention block and a
Mamba-2 mixer side by side on the same input, their outputs summed; µP multipliers on each branch.

Two quirks of transformers 5.17, handled here:
- the token embeddings are scaled by `embedding_multiplier` only on the input_ids path, so `embed` (whose output
  goes in as inputs_embeds, beside the visual tokens) scales them too;
- with `mamba_rms_norm`, the gated norm squeezes the sequence axis of a one-token batch ([B, 1, H] -> [B, H]),
  which the attention branch then broadcasts to [B, B, H]: every decode step of more than one sequence is wrong.
  Each mixer's norm is replaced by one that normalises [tokens, H] and keeps the shape (same weight, same keys).
"""

from __future__ import annotations

import torch
from transformers import FalconH1ForCausalLM, PreTrainedModel
from transformers.models.falcon_h1.modeling_falcon_h1 import (
    FalconH1Mixer,
    FalconH1RMSNormGated,
)

from qbench.backbones.hybrid import TINY_TOKENS, HybridBackbone
from qbench.spec import TINY_VOCAB, BackboneSpec


class TokenwiseRMSNormGated(FalconH1RMSNormGated):
    """transformers' gated RMS norm over the tokens flattened, so that one token per sequence keeps its axis."""

    def forward(self, hidden_states: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        width = hidden_states.shape[-1]
        flat_gate = None if gate is None else gate.reshape(-1, width)
        return super().forward(hidden_states.reshape(-1, width), flat_gate).view(hidden_states.shape)


def tokenwise(norm: FalconH1RMSNormGated) -> TokenwiseRMSNormGated:
    fixed = TokenwiseRMSNormGated(norm.weight.numel(), norm.variance_epsilon, norm.n_groups, norm.norm_before_gate)
    fixed.weight = norm.weight
    return fixed


class FalconH1Backbone(HybridBackbone):
    kind = "falcon_h1"
    reference_class = FalconH1ForCausalLM
    mixer_class = FalconH1Mixer
    # the multipliers away from 1 and the gated norm on, so that the tests see both quirks
    tiny = BackboneSpec("falcon_h1", 64, 2, TINY_VOCAB, {
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
        "mamba_d_ssm": 128, "mamba_n_heads": 4, "mamba_n_groups": 2, "mamba_d_state": 16, "mamba_chunk_size": 8,
        "mamba_rms_norm": True, "mamba_norm_before_gate": False, "embedding_multiplier": 2.0,
        "lm_head_multiplier": 0.5, "key_multiplier": 0.7, "attention_out_multiplier": 0.9, "ssm_out_multiplier": 1.1,
        "ssm_in_multiplier": 0.8, "ssm_multipliers": [0.9, 1.1, 0.8, 1.2, 1.0], "mlp_multipliers": [0.9, 1.1],
        **TINY_TOKENS}, tie_embeddings=False)

    def __init__(self, model: PreTrainedModel):
        super().__init__(model)
        for module in self.mixers():
            if isinstance(module.norm, FalconH1RMSNormGated):
                module.norm = tokenwise(module.norm)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return super().embed(ids) * self.model.config.embedding_multiplier
