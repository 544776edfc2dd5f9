"""Vision towers: registry of tower kinds, each a tuple of encoders run on the same image."""

from __future__ import annotations

from collections.abc import Callable

from qbench.registry import Registry
from qbench.spec import VisionSpec
from qbench.vision.base import Encoder, VisionTower
from qbench.vision.clip import ClipEncoder
from qbench.vision.dinov2 import Dinov2Encoder
from qbench.vision.siglip import SiglipEncoder
from qbench.vision.transforms import ImageError, load_image
from qbench.vision.vit import VitEncoder

ENCODERS: Registry[type[Encoder]] = Registry("vision encoder")
ENCODERS.register("dinov2")(Dinov2Encoder)
ENCODERS.register("siglip")(SiglipEncoder)
ENCODERS.register("clip")(ClipEncoder)
ENCODERS.register("vit")(VitEncoder)

TOWERS: Registry[tuple[str, ...]] = Registry("vision tower")
TOWERS.register("dinosiglip")(("dinov2", "siglip"))  # Cobra, ML-Mamba, Q-Mamba
TOWERS.register("siglip")(("siglip",))
TOWERS.register("clip")(("clip",))  # LLaVA-1.5
TOWERS.register("dinov2")(("dinov2",))
TOWERS.register("vit")(("vit",))

# Config fields a tower sets on its encoders, to match the code its system was trained and evaluated with: the
# prismatic-family systems (Cobra, ML-Mamba, Q-Mamba) run SigLIP through timm's vit_so400m_patch14_siglip_384, whose
# MLP uses exact GELU; SigLIP alone, as its authors ship it (transformers), keeps the tanh approximation.
TOWER_OVERRIDES: dict[str, dict[str, dict[str, str]]] = {"dinosiglip": {"siglip": {"hidden_act": "gelu"}}}


def build_tower(spec: VisionSpec, tower_weights: Callable[[str], str] | None = None) -> VisionTower:
    """Random-weight tower from the spec, or, given `tower_weights` (hub id -> local path), each encoder's own weights."""
    encoders = {}
    for name in TOWERS[spec.kind]:
        cls = ENCODERS[name]
        transform = cls.make_transform(spec.resolution)
        overrides = TOWER_OVERRIDES.get(spec.kind, {}).get(name, {})
        if tower_weights is None:
            encoders[name] = cls.random(spec.dims[name], spec.resolution, spec.patch, transform, **overrides)
        else:
            encoders[name] = cls.pretrained(tower_weights(spec.weights[name]), transform, spec.patch, **overrides)
    return VisionTower(encoders, spec.resolution, spec.patch)


__all__ = ["ENCODERS", "TOWERS", "ImageError", "VisionTower", "build_tower", "load_image"]
