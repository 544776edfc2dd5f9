"""Llama LLMs (LLaVA-1.5's Vicuna-7B) as transformers LlamaForCausalLM, decoding over a static KV cache."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from qbench.backbones.state import DecodeState
from qbench.backbones.static_cache import StaticCacheBackbone, positions_of
from qbench.spec import TINY_VOCAB, BackboneSpec


class LlamaBackbone(StaticCacheBackbone):
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

    def extend(self, ids: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """One masked pass over the chunk: the padding sits mid-sequence, masked; positions go on from each row's own."""
        self.open_chunk(mask, state)
        positions = state.positions[:, None] + positions_of(mask)
        out = self.model(input_ids=ids, attention_mask=state.mask, position_ids=positions, past_key_values=state.cache,
                         use_cache=True, logits_to_keep=1)
        state.positions.copy_(positions[:, -1] + 1)
        return out.logits[:, -1]
