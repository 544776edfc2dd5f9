"""LLM backbones: a registry from a kind to the class that says what the backbone is and can do (base.Backbone)."""

from __future__ import annotations

from qbench.backbones.base import Backbone
from qbench.backbones.falcon_h1 import FalconH1Backbone
from qbench.backbones.llama import LlamaBackbone
from qbench.backbones.mamba import MambaBackbone
from qbench.backbones.mamba2 import Mamba2Backbone
from qbench.backbones.nemotron_h import NemotronHBackbone
from qbench.backbones.state import DecodeState
from qbench.backbones.zamba2 import Zamba2Backbone
from qbench.registry import Registry
from qbench.spec import BackboneSpec

BACKBONES: Registry[type[Backbone]] = Registry("backbone")
BACKBONES.register(MambaBackbone.kind)(MambaBackbone)
BACKBONES.register(Mamba2Backbone.kind)(Mamba2Backbone)
BACKBONES.register(LlamaBackbone.kind)(LlamaBackbone)
BACKBONES.register(Zamba2Backbone.kind)(Zamba2Backbone)
BACKBONES.register(FalconH1Backbone.kind)(FalconH1Backbone)
BACKBONES.register(NemotronHBackbone.kind)(NemotronHBackbone)


def build_backbone(spec: BackboneSpec) -> Backbone:
    return BACKBONES[spec.kind].random(spec)


__all__ = ["BACKBONES", "Backbone", "DecodeState", "build_backbone"]
