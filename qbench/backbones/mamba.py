"""Mamba-1 LLMs (Cobra's Mamba-2.8B-Zephyr) as transformers MambaForCausalLM."""

from __future__ import annotations

import torch
from transformers import DynamicCache, MambaConfig, MambaForCausalLM

from qbench.backbones.base import Backbone, DecodeState
from qbench.spec import BackboneSpec


class RecurrentBackbone(Backbone):
    """Shared by Mamba-1 and Mamba-2: a fixed-size conv + SSM state; padding only matters during prefill."""

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
        out = self.model(input_ids=ids[:, None], cache_params=state.cache, use_cache=True)
        return out.logits[:, -1]


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
