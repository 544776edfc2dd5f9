"""What an LLM backbone is and can do, as the engines, sweeps and the ablation lab ask it.

A backbone class states its family's facts (the transformers model it is measured against, its prompt, its tiny twin
and that twin's tokenizer, the kernel packages that serve it, whether the graph engine compiles its step, which
mamba_ssm mixer shares its layout) and what its decode state holds (a recurrent state, an attention cache, or both).
Its instances make the calls every engine makes: `new_state`, `prefill`, `extend` (continue a state by a chunk of
tokens), `step`, and walk their own state (`state_tensors`). Code above asks for these, never for a class or a name:
adding a backbone is one file and one registry line (qbench.backbones).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from qbench.backbones.kernels import kernel_path
from qbench.backbones.state import DecodeState, cache_tensors
from qbench.spec import BackboneSpec


class Backbone(nn.Module, ABC):
    # --- what it is -------------------------------------------------------------------------------------------------
    kind: ClassVar[str]  # its registry name and spec kind
    reference_class: ClassVar[type[PreTrainedModel]]  # transformers' model of the family: the reference in tests
    prompt: ClassVar[str]  # the chat template (qbench.prompts) of its tiny twin and of the ablation lab's VLMs
    tiny: ClassVar[BackboneSpec]  # the family at small widths: tiny presets, the ablation lab
    tiny_tokenizer: ClassVar[str]  # the built-in tokenizer of its tiny twin (qbench.tokenizers)
    # --- what it can do ---------------------------------------------------------------------------------------------
    kernel_packages: ClassVar[tuple[str, ...]] = ()  # packages whose GPU kernels serve it
    compiled_step: ClassVar[bool] = False  # the graph engine fuses its step with torch.compile before capturing it
    mamba_ssm_mixer: ClassVar[str | None] = None  # mamba_ssm's mixer with its layout: mamba_ssm's own engine runs it
    step_paths: ClassVar[tuple[str, ...]] = ()  # ways its decode step can run, chosen by `step_path` (None: default)
    # --- what its decode state holds ----------------------------------------------------------------------------------
    recurrent_state: ClassVar[bool] = False  # a fixed-size state per sequence (conv + SSM), whatever its length
    attention_cache: ClassVar[bool] = False  # a KV cache that grows with the sequence

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    @classmethod
    @abstractmethod
    def config(cls, spec: BackboneSpec) -> PretrainedConfig:
        """The transformers config of a spec."""

    @classmethod
    def random(cls, spec: BackboneSpec) -> Backbone:
        return cls(cls.reference_class(cls.config(spec)))

    @classmethod
    def state_kind(cls) -> str:
        """'recurrent', 'attention' or 'hybrid' (both): how its decode memory grows with the sequence."""
        if cls.recurrent_state and cls.attention_cache:
            return "hybrid"
        return "recurrent" if cls.recurrent_state else "attention"

    def reference(self) -> PreTrainedModel:
        """transformers' model of the family over this backbone's weights: what the tests compare against."""
        return self.model

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def kernel_path(self) -> str:
        return kernel_path(self.kernel_packages, self.model.device)

    def blocks(self) -> nn.ModuleList:
        """The LLM's repeated layers (FSDP makes each its own unit)."""
        return self.model.base_model.layers

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def logits(self, embeds: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full-sequence logits [B, L, V] without a cache (training, scoring)."""
        return self.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits

    # --- the decode state -------------------------------------------------------------------------------------------
    @abstractmethod
    def new_state(self, batch: int, max_len: int) -> DecodeState:
        """Fresh state for `batch` sequences of at most `max_len` tokens, on the model's device."""

    def state_tensors(self, state: DecodeState) -> list[torch.Tensor]:
        """The state's cache tensors, batch first, in a fixed order: what copies, row loads and byte counts walk."""
        return cache_tensors(state.cache)

    def state_bytes(self, state: DecodeState) -> int:
        """Bytes held by the state's cache tensors (not its mask and positions)."""
        return sum(t.numel() * t.element_size() for t in self.state_tensors(state))

    # --- the calls the engines make ---------------------------------------------------------------------------------
    @abstractmethod
    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Run the prompt [B, L, D] (left-padded, `mask` [B, L]) into `state`; logits of the last position [B, V]."""

    @abstractmethod
    def step(self, ids: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """One token per sequence [B] in, logits [B, V] out; updates `state` in place (CUDA-graph safe)."""

    @abstractmethod
    def extend(self, ids: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Continue each row of a state that holds a prompt's start by tokens [B, L] (left-padded, `mask` [B, L]);
        logits of their last position [B, V]. Padding neither moves a row's state nor enters it."""
