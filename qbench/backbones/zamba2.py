"""Zamba2 LLMs (Zyphra's Zamba2-2.7B) as transformers Zamba2ForCausalLM: Mamba-2 layers, and every few layers a
shared attention block (its input: the hidden state beside the token embeddings) fed back through a linear layer.

The shared blocks are tied: with more hybrid layers than `num_mem_blocks`, later layers reuse the first blocks'
weights (transformers' `_tied_weights_keys`), so the LLM counts each block once (2.66 B parameters for the 2.7B,
4.03 B counting every use) and a checkpoint stores it once (qbench.checkpoints).
"""

from __future__ import annotations

from transformers import Zamba2ForCausalLM
from transformers.models.zamba2.modeling_zamba2 import Zamba2MambaMixer

from qbench.backbones.hybrid import TINY_TOKENS, HybridBackbone
from qbench.spec import TINY_VOCAB, BackboneSpec


class Zamba2Backbone(HybridBackbone):
    kind = "zamba2"
    reference_class = Zamba2ForCausalLM
    mixer_class = Zamba2MambaMixer
    # three hybrid layers over two shared blocks: the third reuses the first's weights
    tiny = BackboneSpec("zamba2", 64, 5, TINY_VOCAB, {
        "layers_block_type": ["mamba", "hybrid", "mamba", "hybrid", "hybrid"], "mamba_d_state": 16,
        "n_mamba_heads": 4, "mamba_ngroups": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
        "intermediate_size": 128, "num_mem_blocks": 2, "use_shared_attention_adapter": True, "adapter_rank": 8,
        "use_mem_rope": True, "chunk_size": 8, **TINY_TOKENS})
