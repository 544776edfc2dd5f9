"""mamba_ssm's own Mamba model over a qbench Mamba/Mamba-2 backbone's weights (shared, not copied).

Its decode step runs each block as mamba_ssm's fused kernels (add+RMSNorm in one Triton kernel, the conv and SSM
state updates in place), about a third of the launches of transformers' step on the same weights and state.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from qbench.backbones.kernels import installed

MIXERS = ("Mamba1", "Mamba2")  # mamba_ssm's mixers, as a backbone's `mamba_ssm_mixer` names them


def fused_available(mixer: str | None, device: torch.device) -> bool:
    return mixer in MIXERS and device.type == "cuda" and installed("mamba_ssm")


def ssm_config(mixer: str, config) -> dict:
    if mixer == "Mamba1":
        return {"layer": "Mamba1", "d_state": config.state_size, "d_conv": config.conv_kernel,
                "expand": config.expand, "dt_rank": config.time_step_rank}
    return {"layer": "Mamba2", "d_state": config.state_size, "d_conv": config.conv_kernel, "expand": config.expand,
            "headdim": config.head_dim, "ngroups": config.n_groups, "chunk_size": config.chunk_size}


def mamba_ssm_model(mixer: str | None, hf: PreTrainedModel) -> nn.Module:
    """MambaLMHeadModel with the transformers model's parameter tensors assigned in (key `embeddings` ->
    `embedding`); strict, so any mismatch of the two layouts is an error."""
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    if mixer not in MIXERS:
        raise ValueError(f"mamba_ssm has no model of this backbone's layout (mixer {mixer!r})")
    config = MambaConfig(d_model=hf.config.hidden_size, n_layer=hf.config.num_hidden_layers,
                         vocab_size=hf.config.vocab_size, ssm_cfg=ssm_config(mixer, hf.config), rms_norm=True,
                         residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=1,
                         tie_embeddings=hf.config.tie_word_embeddings)
    parameter = next(hf.parameters())
    with torch.device("meta"):
        model = MambaLMHeadModel(config, dtype=parameter.dtype)
    weights = {key.replace("backbone.embeddings.", "backbone.embedding."): value
               for key, value in hf.state_dict().items()}
    model.load_state_dict(weights, strict=True, assign=True)
    model.tie_weights()
    return model.eval()


def fused_step(model: nn.Module, ids: torch.Tensor, states: dict[int, tuple[torch.Tensor, torch.Tensor]],
               max_len: int) -> torch.Tensor:
    """One token per sequence [B] through mamba_ssm's step, updating the (conv, ssm) states in place; [B, V]."""
    from mamba_ssm.utils.generation import InferenceParams

    params = InferenceParams(max_seqlen=max_len, max_batch_size=ids.shape[0], seqlen_offset=1,
                             key_value_memory_dict=states)
    return model(ids[:, None], inference_params=params, num_last_tokens=1).logits[:, -1]
