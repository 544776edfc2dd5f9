"""The reference decode path: mamba-ssm's own `generate(cg=True)` on the same weights as a qbench Mamba backbone."""

from __future__ import annotations

import torch
from torch import nn

from qbench.backbones import Backbone
from qbench.backbones.fused import mamba_ssm_model

REFERENCE_ENGINE = "mamba_ssm-cg"


def reference_model(backbone: Backbone) -> nn.Module:
    """mamba_ssm's MambaLMHeadModel over the backbone's own weight tensors."""
    return mamba_ssm_model(backbone.mamba_ssm_mixer, backbone.model)


@torch.inference_mode()
def reference_generate(model: nn.Module, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """[B, new_tokens] greedy tokens after `ids` [B, L], through mamba_ssm's CUDA-graph decode."""
    out = model.generate(ids, max_length=ids.shape[1] + new_tokens, top_k=1, cg=True)
    return out[:, ids.shape[1]:]


def reference_state_bytes(model: nn.Module) -> int:
    """Bytes of the conv and SSM states that mamba_ssm's captured decode reads and writes."""
    states = model._decoding_cache.inference_params.key_value_memory_dict
    return sum(t.numel() * t.element_size() for pair in states.values() for t in pair)
