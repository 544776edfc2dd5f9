"""Mamba-2 LLMs (ML-Mamba's Mamba-2 2.7B) in transformers Mamba2ForCausalLM's layout, on qbench's own layers."""

from __future__ import annotations

from transformers import Mamba2Config, Mamba2ForCausalLM

from qbench.backbones.mamba import RecurrentBackbone
from qbench.backbones.mamba_layers import Mamba2Block
from qbench.spec import TINY_VOCAB, BackboneSpec


class Mamba2Backbone(RecurrentBackbone):
    """Mamba-2: a scalar decay per head over a [head_dim, N] state, scanned in chunks."""

    kind = "mamba2"
    reference_class = Mamba2ForCausalLM
    block = Mamba2Block
    tiny = BackboneSpec("mamba2", 64, 2, TINY_VOCAB, {"state_size": 16, "expand": 2, "head_dim": 16})
    mamba_ssm_mixer = "Mamba2"

    @classmethod
    def config(cls, spec: BackboneSpec) -> Mamba2Config:
        options = spec.options
        expand = options.get("expand", 2)
        head_dim = options.get("head_dim", 64)
        return Mamba2Config(
            vocab_size=spec.vocab,
            hidden_size=spec.hidden,
            num_hidden_layers=spec.layers,
            state_size=options.get("state_size", 128),
            expand=expand,
            head_dim=head_dim,
            num_heads=expand * spec.hidden // head_dim,
            n_groups=options.get("groups", 1),
            conv_kernel=options.get("conv_kernel", 4),
            chunk_size=options.get("chunk", 256),
            residual_in_fp32=True,
            tie_word_embeddings=spec.tie_embeddings,
            layer_norm_epsilon=1e-5,
            eos_token_id=0, bos_token_id=0, pad_token_id=0,
        )
