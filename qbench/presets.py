"""Presets: name -> VLMSpec for the four published systems, Cobra-LDP, and a tiny twin of each."""

from __future__ import annotations

import dataclasses

from qbench.backbones import BACKBONES
from qbench.projectors import PROJECTORS
from qbench.projectors.base import square_side
from qbench.registry import Registry
from qbench.spec import BackboneSpec, ProjectorSpec, VisionSpec, ViTDims, VLMSpec

PRESETS: Registry[VLMSpec] = Registry("model")
ALIASES = {"cobra": "cobra-3b", "ml-mamba": "ml-mamba-2.7b", "q-mamba": "q-mamba-3b", "llava": "llava-1.5-7b",
           "cobra-ldp": "cobra-ldp-3b", "cobra-zamba2": "cobra-zamba2-2.7b", "cobra-falcon-h1": "cobra-falcon-h1-3b",
           "cobra-nemotron-h": "cobra-nemotron-h-4b"}

DINOSIGLIP_384 = VisionSpec(
    "dinosiglip", 384, 14,
    dims={"dinov2": ViTDims(1024, 24, 16, 4096, registers=4), "siglip": ViTDims(1152, 27, 16, 4304)},
    weights={"dinov2": "facebook/dinov2-with-registers-large", "siglip": "google/siglip-so400m-patch14-384"},
)
CLIP_336 = VisionSpec("clip", 336, 14, dims={"clip": ViTDims(1024, 24, 16, 4096)},
                      weights={"clip": "openai/clip-vit-large-patch14-336"})
MAMBA_2_8B = BackboneSpec("mamba", 2560, 64, 50280, {"state_size": 16, "expand": 2, "conv_kernel": 4,
                                                      "time_step_rank": 160})
MAMBA2_2_7B = BackboneSpec("mamba2", 2560, 64, 50288, {"state_size": 128, "expand": 2, "head_dim": 64, "groups": 1})
VICUNA_7B = BackboneSpec("llama", 4096, 32, 32064, {"heads": 32, "intermediate": 11008}, tie_embeddings=False)
NEOX_TOKENIZER = "xiuyul/mamba-2.8b-zephyr"  # GPT-NeoX-20B BPE with the Zephyr chat setup

# Hybrid LLMs at their published ~3B configurations (options: the transformers config's own fields).
# Zamba2-2.7B: config.json of Zyphra/Zamba2-2.7B-instruct and Zyphra/Zamba2-2.7B-Instruct-v2 (Hugging Face), and
# config.json + mamba_config.py of github.com/Zyphra/Zamba2: 54 layers, a shared attention block at 9 of them
# (2 blocks, alternating), no LoRA on the shared attention, no rotary; 2.66 B parameters (each shared block once).
ZAMBA2_HYBRID_LAYERS = (6, 12, 18, 24, 30, 36, 42, 47, 51)
ZAMBA2_2_7B = BackboneSpec("zamba2", 2560, 54, 32000, {
    "layers_block_type": ["hybrid" if i in ZAMBA2_HYBRID_LAYERS else "mamba" for i in range(54)],
    "mamba_d_state": 64, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_ngroups": 1, "n_mamba_heads": 80,
    "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 10240, "hidden_act": "gelu",
    "num_mem_blocks": 2, "use_shared_attention_adapter": False, "adapter_rank": 128, "use_mem_rope": False,
    "chunk_size": 256, "max_position_embeddings": 4096})
# Falcon-H1-3B: the table of transformers' FalconH1 documentation ("H1 3B: 32 layers, 2560, 10 heads, 2 KV, 32 Mamba
# heads, d_head 128/128, d_state 256, 128K") and a published FALCON_H1_3B_HF config fixture (vocab 65536,
# intermediate 6144, mamba_d_ssm 4096, 1 group, chunk 128, untied); rope theta 1e11 and the norm after the gate as in
# the released Falcon-H1 configs read; the gated norm on: a published count of 3,149.4 M parameters is this model's
# 3,149,387,264 with its 32 x 4096 norm weights, not 3,149,256,192 without. The 3B's µP multipliers were not found:
# 1.0, which changes no work.
FALCON_H1_3B = BackboneSpec("falcon_h1", 2560, 32, 65536, {
    "num_attention_heads": 10, "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 6144,
    "mamba_d_ssm": 4096, "mamba_n_heads": 32, "mamba_d_head": 128, "mamba_n_groups": 1, "mamba_d_state": 256,
    "mamba_d_conv": 4, "mamba_chunk_size": 128, "mamba_rms_norm": True, "mamba_norm_before_gate": False,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e11}, "max_position_embeddings": 131072,
    "eos_token_id": 11}, tie_embeddings=False)
# Nemotron-H-4B-Base-8K: NVIDIA Megatron-Bridge's "Nemotron H 4B" specification and NVIDIA Model-Optimizer's pruning
# of the 8B into it (hidden 3072, FFN 12288, 112 Mamba heads, the 8B's 52-layer pattern: 24 Mamba, 24 MLP, 4
# attention); 8 groups as the 8B; 4.489 B parameters (NVIDIA: 4.49 B).
NEMOTRON_H_4B = BackboneSpec("nemotron_h", 3072, 52, 131072, {
    "hybrid_override_pattern": "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288,
    "mamba_num_heads": 112, "mamba_head_dim": 64, "ssm_state_size": 128, "n_groups": 8, "conv_kernel": 4,
    "chunk_size": 128, "max_position_embeddings": 8192}, tie_embeddings=False)

FULL = [
    VLMSpec("cobra-3b", DINOSIGLIP_384, ProjectorSpec("fused-mlp"), MAMBA_2_8B, "zephyr", NEOX_TOKENIZER,
            weights="cobra:han1997/cobra"),
    VLMSpec("cobra-ldp-3b", DINOSIGLIP_384, ProjectorSpec("ldp", {"pooled_grid": 14}), MAMBA_2_8B, "zephyr",
            NEOX_TOKENIZER),
    VLMSpec("ml-mamba-2.7b", DINOSIGLIP_384, ProjectorSpec("msc"), MAMBA2_2_7B, "zephyr", NEOX_TOKENIZER,
            weights="mlmamba:huangwenjun1994/ML-Mamba"),
    VLMSpec("q-mamba-3b", DINOSIGLIP_384, ProjectorSpec("qmamba", {"queries": 256, "depth": 2, "heads": 16}),
            MAMBA_2_8B, "zephyr", NEOX_TOKENIZER),
    VLMSpec("llava-1.5-7b", CLIP_336, ProjectorSpec("mlp"), VICUNA_7B, "llava", "llava-hf/llava-1.5-7b-hf",
            weights="llava-hf:llava-hf/llava-1.5-7b-hf"),
    # Cobra's tower, projector and prompt on each hybrid LLM, with the LLM's own tokenizer (random weights)
    VLMSpec("cobra-zamba2-2.7b", DINOSIGLIP_384, ProjectorSpec("fused-mlp"), ZAMBA2_2_7B, "zephyr",
            "Zyphra/Zamba2-2.7B-instruct"),
    VLMSpec("cobra-falcon-h1-3b", DINOSIGLIP_384, ProjectorSpec("fused-mlp"), FALCON_H1_3B, "zephyr",
            "tiiuae/Falcon-H1-3B-Instruct"),
    VLMSpec("cobra-nemotron-h-4b", DINOSIGLIP_384, ProjectorSpec("fused-mlp"), NEMOTRON_H_4B, "zephyr",
            "nvidia/Nemotron-H-4B-Base-8K"),
]

# Tiny twins: the same structure at small widths, 112 px (8 x 8 = 64 patches), the backbone family's tiny twin and
# built-in tokenizer (qbench.backbones); CPU in seconds.
TINY_DINOSIGLIP = VisionSpec("dinosiglip", 112, 14, dims={"dinov2": ViTDims(64, 3, 2, 256, registers=4),
                                                          "siglip": ViTDims(48, 3, 2, 192)})
TINY_CLIP = VisionSpec("clip", 112, 14, dims={"clip": ViTDims(64, 3, 2, 256)})


def tiny_twin(spec: VLMSpec) -> VLMSpec:
    family = BACKBONES[spec.backbone.kind]
    return VLMSpec(
        name="tiny-" + spec.name.rsplit("-", 1)[0] if spec.name != "llava-1.5-7b" else "tiny-llava",
        # the system's tower hub ids, so that a tiny twin loads its system's published checkpoint layout
        vision=dataclasses.replace(TINY_CLIP if spec.vision.kind == "clip" else TINY_DINOSIGLIP,
                                   weights=spec.vision.weights),
        projector=ProjectorSpec(spec.projector.kind, PROJECTORS[spec.projector.kind].tiny_options),
        backbone=family.tiny,
        prompt=spec.prompt,
        tokenizer=family.tiny_tokenizer,
    )


for _spec in FULL:
    PRESETS.register(_spec.name)(_spec)
    _tiny = tiny_twin(_spec)
    PRESETS.register(_tiny.name)(_tiny)


def preset_names() -> list[str]:
    return [spec.name for spec in FULL] + [tiny_twin(spec).name for spec in FULL]


def get_preset(name: str) -> VLMSpec:
    """The spec of a preset or alias (e.g. `cobra`, `tiny-cobra`, `llava-1.5-7b`)."""
    return PRESETS[ALIASES.get(name, name)]


def at_visual_tokens(spec: VLMSpec, tokens: int) -> VLMSpec:
    """The same system with `tokens` visual tokens: by the projector's own option where it has one (LDP's pooled
    grid, Q-Mamba's queries), else by the tower's resolution."""
    kind = spec.projector.kind
    options = PROJECTORS[kind].options_for_tokens(spec.projector.options, tokens)
    if options is not None:
        return spec.replace(projector=ProjectorSpec(kind, options))
    side = square_side(tokens, kind)
    return spec.replace(vision=dataclasses.replace(spec.vision, resolution=side * spec.vision.patch))
