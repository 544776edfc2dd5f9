"""Presets: name -> VLMSpec for the four published systems, Cobra-LDP, and a tiny twin of each."""

from __future__ import annotations

import dataclasses
import math

from qbench.registry import Registry
from qbench.spec import BackboneSpec, ProjectorSpec, VisionSpec, ViTDims, VLMSpec

PRESETS: Registry[VLMSpec] = Registry("model")
ALIASES = {"cobra": "cobra-3b", "ml-mamba": "ml-mamba-2.7b", "q-mamba": "q-mamba-3b", "llava": "llava-1.5-7b",
           "cobra-ldp": "cobra-ldp-3b"}

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
]

# Tiny twins: the same structure at small widths, 112 px (8 x 8 = 64 patches), built-in tokenizers; CPU in seconds.
TINY_VOCAB = 1024
TINY_DINOSIGLIP = VisionSpec("dinosiglip", 112, 14, dims={"dinov2": ViTDims(64, 3, 2, 256, registers=4),
                                                          "siglip": ViTDims(48, 3, 2, 192)})
TINY_CLIP = VisionSpec("clip", 112, 14, dims={"clip": ViTDims(64, 3, 2, 256)})
TINY_MAMBA = BackboneSpec("mamba", 64, 2, TINY_VOCAB, {"state_size": 8, "expand": 2, "conv_kernel": 4})
TINY_MAMBA2 = BackboneSpec("mamba2", 64, 2, TINY_VOCAB, {"state_size": 16, "expand": 2, "head_dim": 16})
TINY_LLAMA = BackboneSpec("llama", 64, 2, TINY_VOCAB, {"heads": 4, "intermediate": 172}, tie_embeddings=False)
TINY_PROJECTOR_OPTIONS = {"ldp": {"pooled_grid": 4}, "msc": {"state": 16, "head_dim": 16},
                          "qmamba": {"queries": 16, "depth": 2, "heads": 4}}
TINY_BACKBONES = {"mamba": TINY_MAMBA, "mamba2": TINY_MAMBA2, "llama": TINY_LLAMA}
TINY_TOKENIZERS = {"mamba": "qbench-tiny-neox", "mamba2": "qbench-tiny-neox", "llama": "qbench-tiny-llama"}


def tiny_twin(spec: VLMSpec) -> VLMSpec:
    kind = spec.backbone.kind
    return VLMSpec(
        name="tiny-" + spec.name.rsplit("-", 1)[0] if spec.name != "llava-1.5-7b" else "tiny-llava",
        # the system's tower hub ids, so that a tiny twin loads its system's published checkpoint layout
        vision=dataclasses.replace(TINY_CLIP if spec.vision.kind == "clip" else TINY_DINOSIGLIP,
                                   weights=spec.vision.weights),
        projector=ProjectorSpec(spec.projector.kind, TINY_PROJECTOR_OPTIONS.get(spec.projector.kind, {})),
        backbone=TINY_BACKBONES[kind],
        prompt=spec.prompt,
        tokenizer=TINY_TOKENIZERS[kind],
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
    """The same system with `tokens` visual tokens: by resolution for patch projectors, by the pooled grid for
    LDP, by the number of queries for Q-Mamba."""
    kind = spec.projector.kind
    if kind == "qmamba":
        return spec.replace(projector=ProjectorSpec(kind, {**spec.projector.options, "queries": tokens}))
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"{tokens} visual tokens is not a square grid, which the {kind} projector needs")
    if kind == "ldp":
        return spec.replace(projector=ProjectorSpec(kind, {**spec.projector.options, "pooled_grid": side}))
    return spec.replace(vision=dataclasses.replace(spec.vision, resolution=side * spec.vision.patch))
