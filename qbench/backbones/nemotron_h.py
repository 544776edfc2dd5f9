"""Nemotron-H LLMs (NVIDIA's Nemotron-H-4B, the LLM of Nemotron Nano VL) as transformers NemotronHForCausalLM: mostly
Mamba-2 and MLP layers, a few attention layers without positional encoding (NoPE)."""

from __future__ import annotations

from transformers import NemotronHForCausalLM
from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer

from qbench.backbones.hybrid import TINY_TOKENS, HybridBackbone
from qbench.spec import TINY_VOCAB, BackboneSpec


class NemotronHBackbone(HybridBackbone):
    kind = "nemotron_h"
    reference_class = NemotronHForCausalLM
    mixer_class = NemotronHMamba2Mixer
    tiny = BackboneSpec("nemotron_h", 64, 4, TINY_VOCAB, {
        "layers_block_type": ["mamba", "attention", "mlp", "mamba"], "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 128, "ssm_state_size": 16,
        "mamba_num_heads": 8, "mamba_head_dim": 16, "n_groups": 2, "chunk_size": 8, **TINY_TOKENS},
        tie_embeddings=False)
