"""Specs: plain data describing a VLM; builders in vision/, projectors/ and backbones/ turn them into modules."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

TINY_VOCAB = 1024  # the tiny twins' vocabulary: the size of qbench's built-in tokenizers


@dataclass(frozen=True)
class ViTDims:
    """Shape of one ViT encoder, in the terms of its transformers config."""

    width: int
    depth: int
    heads: int
    mlp: int
    registers: int = 0


@dataclass(frozen=True)
class VisionSpec:
    kind: str  # registry key in qbench.vision
    resolution: int  # square input size in pixels; sets the patch grid
    patch: int = 14
    dims: dict[str, ViTDims] = field(default_factory=dict)  # one entry per tower (a fused tower has two)
    weights: dict[str, str] = field(default_factory=dict)  # tower name -> hub id of its pretrained weights

    @property
    def grid(self) -> int:
        return self.resolution // self.patch


@dataclass(frozen=True)
class ProjectorSpec:
    kind: str  # registry key in qbench.projectors
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneSpec:
    kind: str  # registry key in qbench.backbones
    hidden: int
    layers: int
    vocab: int
    options: dict[str, Any] = field(default_factory=dict)
    tie_embeddings: bool = True


@dataclass(frozen=True)
class VLMSpec:
    name: str
    vision: VisionSpec
    projector: ProjectorSpec
    backbone: BackboneSpec
    prompt: str  # registry key in qbench.prompts
    tokenizer: str  # hub id, local path, or a built-in tokenizer name
    weights: str = "random"  # default weights source: a checkpoint format key + hub id, or "random"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMSpec:
        vision = dict(data["vision"])
        vision["dims"] = {k: ViTDims(**v) for k, v in vision.get("dims", {}).items()}
        return cls(
            name=data["name"],
            vision=VisionSpec(**vision),
            projector=ProjectorSpec(**data["projector"]),
            backbone=BackboneSpec(**data["backbone"]),
            prompt=data["prompt"],
            tokenizer=data["tokenizer"],
            weights=data.get("weights", "random"),
        )

    def replace(self, **changes: Any) -> VLMSpec:
        return dataclasses.replace(self, **changes)
