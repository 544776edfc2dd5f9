"""Mamba-1 LLMs (Cobra's Mamba-2.8B-Zephyr) as transformers MambaForCausalLM."""

from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache, MambaConfig, MambaForCausalLM

from qbench.backbones.base import Backbone, DecodeState
from qbench.backbones.fused import fused_available, fused_step, mamba_ssm_model
from qbench.spec import BackboneSpec


class RecurrentBackbone(Backbone):
    """Shared by Mamba-1 and Mamba-2: a fixed-size conv + SSM state; padding only matters during prefill.

    Prefill runs through transformers; on a GPU with mamba_ssm, decode steps run mamba_ssm's fused step over the
    same weights and the same state tensors (else transformers' step).
    """

    _fused: list[nn.Module]  # in a list, so the shared-weight model is not registered as a submodule

    def new_state(self, batch: int, max_len: int) -> DecodeState:
        device = self.model.device
        return DecodeState(
            cache=DynamicCache(config=self.model.config),
            mask=torch.ones(batch, max_len, dtype=torch.long, device=device),
            positions=torch.zeros(batch, dtype=torch.long, device=device),
        )

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        out = self.model(inputs_embeds=embeds, attention_mask=mask, cache_params=state.cache, use_cache=True,
                         logits_to_keep=1)
        return out.logits[:, -1]

    def step(self, ids: torch.Tensor, state: DecodeState) -> torch.Tensor:
        if fused_available(self.family, ids.device):
            states = {index: (layer.conv_states[0], layer.recurrent_states[0])
                      for index, layer in enumerate(state.cache.layers)}
            return fused_step(self.fused_model(), ids, states, state.mask.shape[1])
        out = self.model(input_ids=ids[:, None], cache_params=state.cache, use_cache=True)
        return out.logits[:, -1]

    def fused_model(self) -> nn.Module:
        """mamba_ssm's model sharing this backbone's parameters, made on first use."""
        if not getattr(self, "_fused", None):
            self._fused = [mamba_ssm_model(self.family, self.model)]
        return self._fused[0]

    @property
    def kernel_path(self) -> str:
        path = super().kernel_path
        return path + "; decode: mamba_ssm fused step" if fused_available(self.family, self.model.device) else path


class MambaBackbone(RecurrentBackbone):
    hf_class = MambaForCausalLM
    family = "mamba"

    @classmethod
    def config(cls, spec: BackboneSpec) -> MambaConfig:
        options = spec.options
        return MambaConfig(
            vocab_size=spec.vocab,
            hidden_size=spec.hidden,
            num_hidden_layers=spec.layers,
            state_size=options.get("state_size", 16),
            expand=options.get("expand", 2),
            conv_kernel=options.get("conv_kernel", 4),
            time_step_rank=options.get("time_step_rank", "auto"),
            residual_in_fp32=True,
            tie_word_embeddings=spec.tie_embeddings,
            layer_norm_epsilon=1e-5,
            eos_token_id=0, bos_token_id=0, pad_token_id=0,
        )
