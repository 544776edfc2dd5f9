"""LLM backbones: registry of transformers causal LMs behind one prefill/step interface."""

from __future__ import annotations

from qbench.backbones.base import Backbone, DecodeState
from qbench.backbones.llama import LlamaBackbone
from qbench.backbones.mamba import MambaBackbone
from qbench.backbones.mamba2 import Mamba2Backbone
from qbench.registry import Registry
from qbench.spec import BackboneSpec

BACKBONES: Registry[type[Backbone]] = Registry("backbone")
BACKBONES.register("mamba")(MambaBackbone)
BACKBONES.register("mamba2")(Mamba2Backbone)
BACKBONES.register("llama")(LlamaBackbone)


def build_backbone(spec: BackboneSpec) -> Backbone:
    return BACKBONES[spec.kind].random(spec)


__all__ = ["BACKBONES", "Backbone", "DecodeState", "build_backbone"]
