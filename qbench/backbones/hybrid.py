"""Hybrid Mamba/attention LLMs (Zamba2, Falcon-H1, Nemotron-H) as transformers' own models over their StaticCache.

A hybrid's decode state holds both a fixed-size conv + SSM state (its Mamba-2 layers) and a KV cache that grows with
the sequence (its attention layers): transformers' StaticCache builds one of each, or both, per layer from the
config's `layer_types`, and qbench's state walk (backbones/state.py) copies and loads them together.

What transformers 5.17 gets right and wrong here (docs/hybrids.md has the measurements):
- a left-padded prompt is exact if its mask is exactly the prompt's length: the Mamba layers read their padding from
  the mask's last columns (StaticCacheBackbone.prefill);
- a multi-token chunk continuing a state is exact only without padding inside it: padded positions still decay the
  SSM state and enter the conv window. `extend` therefore steps the padded columns one at a time, putting back the
  conv and SSM state of each row that is still padding, then takes the padding-free rest in one chunked pass;
- the chunked scan clamps the step size dt (Zamba2, Nemotron-H) where the decode step does not, so the two would
  compute different models: the clamp is lifted (STEP_DT_LIMIT);
- training on a GPU with mamba_ssm would take its fused split-conv1d kernel, which masks no padding after the
  conv and needs causal_conv1d: the Mamba mixers stay on their masked chunked path instead (`train`).

A family is one file: its transformers classes, its tiny twin, and its quirks. A spec's options are the config's
own fields, as the family publishes them.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.cache_utils import LinearAttentionCacheLayerMixin

from qbench.backbones.state import DecodeState
from qbench.backbones.static_cache import StaticCacheBackbone
from qbench.spec import BackboneSpec

# The range a chunked scan clamps each step size dt to: none, as the decode step (which takes no limit) and the
# families' own code (Zyphra's Mamba2Layer, Nemotron-H's `time_step_limit`, mamba_ssm's Mamba2) have it. transformers
# 5.17 clamps Zamba2's and Nemotron-H's chunks at `time_step_min` (1e-3) but not their steps, so a prompt taken in
# one chunk and the same prompt taken a step at a time would differ wherever dt < 1e-3.
STEP_DT_LIMIT = (0.0, float("inf"))
# The tiny twins' special tokens, as their tokenizer (qbench-tiny-neox) has them: the embedding of the padding id
# is held at zero, so it must not be a token the prompt uses.
TINY_TOKENS = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 0}


class HybridBackbone(StaticCacheBackbone):
    """Mamba-2 layers beside attention layers: a recurrent state and a KV cache, copied and continued together."""

    prompt = "zephyr"  # Cobra's recipe: the hybrids stand where Cobra's Mamba LLM stood
    tiny_tokenizer = "qbench-tiny-neox"
    # transformers resolves each op on its own: mamba_ssm's Triton scan and step, causal_conv1d's conv (else PyTorch)
    kernel_packages = ("mamba_ssm", "causal_conv1d")
    recurrent_state = True
    attention_cache = True
    mixer_class: ClassVar[type[nn.Module]]  # the family's Mamba-2 mixer in transformers

    def __init__(self, model: PreTrainedModel):
        super().__init__(model)
        for module in self.mixers():
            module.time_step_limit = STEP_DT_LIMIT

    @classmethod
    def config(cls, spec: BackboneSpec) -> PretrainedConfig:
        config = cls.reference_class.config_class(vocab_size=spec.vocab, hidden_size=spec.hidden,
                                                  num_hidden_layers=spec.layers,
                                                  tie_word_embeddings=spec.tie_embeddings, **spec.options)
        if len(config.layer_types) != spec.layers:
            raise ValueError(f"a {cls.kind} spec of {spec.layers} layers names {len(config.layer_types)} layer types")
        return config

    def mixers(self) -> list[nn.Module]:
        return [module for module in self.model.modules() if isinstance(module, self.mixer_class)]

    def train(self, mode: bool = True) -> HybridBackbone:
        """Training keeps the Mamba mixers on their masked chunked path (mamba_ssm's chunk scan on a GPU, with its
        backward): their fused training kernel would let left padding into the state, and needs causal_conv1d."""
        super().train(mode)
        for module in self.mixers():
            module.training = False
        return self

    def recurrent_tensors(self, state: DecodeState) -> list[torch.Tensor]:
        """The conv and SSM states of the Mamba layers (not the KV cache)."""
        return [tensor for layer in state.cache.layers if isinstance(layer, LinearAttentionCacheLayerMixin)
                for states in (layer.conv_states, layer.recurrent_states) for tensor in states.values()
                if tensor is not None]

    def extend(self, ids: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """The columns where some row is still padding, one step each, every row that is still padding given its
        conv and SSM state back after the step (its KV columns are masked); then the rest, padding-free, in one
        chunked pass. Positions go on from each row's own."""
        start, length = self.open_chunk(mask, state), ids.shape[1]
        starts = mask.argmax(-1)  # each row's first question token
        padded = int(starts.max())
        base = state.positions.clone()
        if padded:
            recurrent = self.recurrent_tensors(state)
            kept = [tensor.clone() for tensor in recurrent]
            for column in range(padded):
                state.positions.copy_(base + (column - starts).clamp(min=0))
                self.step(ids[:, column], state)
                waiting = starts > column
                for tensor, before in zip(recurrent, kept):
                    tensor.copy_(torch.where(waiting.view(-1, *[1] * (tensor.dim() - 1)), before, tensor))
        positions = base[:, None] + torch.arange(padded, length, device=ids.device) - starts[:, None]
        out = self.model(input_ids=ids[:, padded:], attention_mask=state.mask[:, : start + length],
                         position_ids=positions, past_key_values=state.cache, use_cache=True, logits_to_keep=1)
        state.positions.copy_(base + length - starts)
        return out.logits[:, -1]
