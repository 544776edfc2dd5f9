"""Llama LLMs (LLaVA-1.5's Vicuna-7B) as transformers LlamaForCausalLM, decoding over a static KV cache."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, StaticCache

from qbench.backbones.base import Backbone
from qbench.backbones.state import DecodeState
from qbench.spec import TINY_VOCAB, BackboneSpec


class LlamaBackbone(Backbone):
    """A Transformer LLM: its KV cache grows with the sequence; a question joins a cached prefix in one masked pass."""

    kind = "llama"
    reference_class = LlamaForCausalLM
    prompt = "llava"
    tiny = BackboneSpec("llama", 64, 2, TINY_VOCAB, {"heads": 4, "intermediate": 172}, tie_embeddings=False)
    tiny_tokenizer = "qbench-tiny-llama"
    compiled_step = True  # its step is a long chain of small ops (norms, rotary, the cache update): inductor fuses them
    attention_cache = True

    @classmethod
    def config(cls, spec: BackboneSpec) -> LlamaConfig:
        options = spec.options
        return LlamaConfig(
            vocab_size=spec.vocab,
            hidden_size=spec.hidden,
            num_hidden_layers=spec.layers,
            num_attention_heads=options.get("heads", 32),
            num_key_value_heads=options.get("kv_heads", options.get("heads", 32)),
            intermediate_size=options["intermediate"],
            max_position_embeddings=options.get("max_positions", 4096),
            rms_norm_eps=1e-5,
            tie_word_embeddings=spec.tie_embeddings,
            bos_token_id=1, eos_token_id=2, pad_token_id=options.get("pad_token_id", 0),
        )

    def logits(self, embeds: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        positions = None if mask is None else (mask.cumsum(-1) - 1).clamp(min=0)
        return self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False).logits

    def new_state(self, batch: int, max_len: int) -> DecodeState:
        device = self.model.device
        return DecodeState(
            cache=StaticCache(config=self.model.config, max_cache_len=max_len),
            mask=torch.ones(batch, max_len, dtype=torch.long, device=device),
            positions=torch.zeros(batch, dtype=torch.long, device=device),
        )

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        length = embeds.shape[1]
        state.mask[:, :length] = mask
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(inputs_embeds=embeds, attention_mask=state.mask, position_ids=positions,
                         past_key_values=state.cache, use_cache=True, logits_to_keep=1)
        state.positions.copy_(positions[:, -1] + 1)
        return out.logits[:, -1]

    def extend(self, ids: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """One masked pass over the chunk: the padding sits mid-sequence, masked; positions go on from each row's own."""
        start, length = int(state.cache.get_seq_length()), ids.shape[1]
        state.mask[:, start : start + length] = mask
        state.mask[:, start + length :] = 1
        positions = state.positions[:, None] + (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=state.mask, position_ids=positions, past_key_values=state.cache,
                         use_cache=True, logits_to_keep=1)
        state.positions.copy_(positions[:, -1] + 1)
        return out.logits[:, -1]

    def step(self, ids: torch.Tensor, state: DecodeState) -> torch.Tensor:
        out = self.model(input_ids=ids[:, None], attention_mask=state.mask, position_ids=state.positions[:, None],
                         past_key_values=state.cache, use_cache=True)
        state.positions.add_(1)
        return out.logits[:, -1]
