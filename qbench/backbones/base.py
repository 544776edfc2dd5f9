"""An LLM backbone: a transformers causal LM plus the three calls the engine needs (prefill, step, state)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from qbench.backbones.kernels import kernel_path
from qbench.spec import BackboneSpec


@dataclass
class DecodeState:
    """Everything a decode step reads and writes in place: the recurrent state or KV cache, and the padding mask."""

    cache: Any
    mask: torch.Tensor  # [B, max_len] 1 where a real token sits (left padding is 0)
    positions: torch.Tensor  # [B] position id of the next token
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class Backbone(nn.Module, ABC):
    hf_class: type[PreTrainedModel]
    family: str  # "mamba", "mamba2", "llama": which kernel family serves it

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    @classmethod
    @abstractmethod
    def config(cls, spec: BackboneSpec) -> PretrainedConfig: ...

    @classmethod
    def random(cls, spec: BackboneSpec) -> Backbone:
        return cls(cls.hf_class(cls.config(spec)))

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def kernel_path(self) -> str:
        return kernel_path(self.family, self.model.device)

    def blocks(self) -> nn.ModuleList:
        """The LLM's repeated layers (FSDP makes each its own unit)."""
        return self.model.base_model.layers

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def logits(self, embeds: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full-sequence logits [B, L, V] without a cache (training, scoring)."""
        return self.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits

    @abstractmethod
    def new_state(self, batch: int, max_len: int) -> DecodeState:
        """Fresh state for `batch` sequences of at most `max_len` tokens, on the model's device."""

    @abstractmethod
    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Run the prompt [B, L, D] (left-padded, `mask` [B, L]) into `state`; logits of the last position [B, V]."""

    @abstractmethod
    def step(self, ids: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """One token per sequence [B] in, logits [B, V] out; updates `state` in place (CUDA-graph safe)."""

    def state_bytes(self, state: DecodeState) -> int:
        """Bytes held by the state or cache tensors."""
        return sum(t.numel() * t.element_size() for t in state_tensors(state.cache))


def state_tensors(cache: Any) -> list[torch.Tensor]:
    tensors = []
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            value = getattr(layer, name, None)
            if isinstance(value, torch.Tensor):
                tensors.append(value)
        for name in ("conv_states", "recurrent_states"):
            tensors += [t for t in getattr(layer, name, {}).values() if isinstance(t, torch.Tensor)]
    return tensors
