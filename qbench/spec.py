"""Specs: plain data describing a VLM; builders in vision/, projectors/ and backbones/ turn them into modules.

A spec read from a file (a checkpoint's spec.json) is checked field by field before anything is built: types, and
sizes within LIMITS, so that a mistyped or hostile file fails with its field named instead of in a huge allocation.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from qbench.folder import name_problem

TINY_VOCAB = 1024  # the tiny twins' vocabulary: the size of qbench's built-in tokenizers
# The largest size each field may ask for: far above any published model's, far below what would exhaust a machine.
LIMITS = {"resolution": 4096, "patch": 1024, "width": 16384, "depth": 256, "heads": 256, "mlp": 131072,
          "registers": 256, "hidden": 32768, "layers": 512, "vocab": 1 << 19, "option": 1 << 20}


class SpecError(ValueError):
    """A spec field of the wrong type or an impossible size; the message names the field."""


def whole(value: Any, where: str, limit: str, low: int = 1) -> None:
    """A whole number from `low` to LIMITS[limit]; SpecError naming `where` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= LIMITS[limit]:
        shown = repr(value) if len(repr(value)) <= 30 else f"{repr(value)[:27]}..."
        raise SpecError(f"{where} is {shown}: it must be a whole number from {low:,} to {LIMITS[limit]:,}")


def text_field(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where} is {value!r}: it must be a non-empty string")


def check_options(options: Any, where: str) -> None:
    """Options are names to JSON values: whole numbers within LIMITS['option'], finite numbers, flags, strings, and
    lists or objects of those (a hybrid's layer pattern, a rope setting), none of them large."""
    if not isinstance(options, dict):
        raise SpecError(f"{where} must be an object of named options")
    for name, value in options.items():
        check_option(value, f"{where}.{name}")


def check_option(value: Any, where: str, depth: int = 0) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        whole(value, where, "option", low=-LIMITS["option"])
    elif isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where} is {value!r}: it must be a finite number")
    elif isinstance(value, (list, dict)) and depth < 3 and len(value) <= LIMITS["layers"] * 2:
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            check_option(item, f"{where}.{key}", depth + 1)
    elif not (value is None or isinstance(value, (bool, float)) or (isinstance(value, str) and len(value) <= 1024)):
        raise SpecError(f"{where} must be a number, a flag, a string, or a short list or object of those")


def check_spec(data: Any) -> None:
    """The fields of a spec as JSON gives them: types and sizes (LIMITS); SpecError naming the first bad one."""
    if not isinstance(data, dict):
        raise SpecError("a spec must be a JSON object")
    for part in ("vision", "projector", "backbone"):
        if not isinstance(data.get(part), dict):
            raise SpecError(f"{part} must be an object")
    for name in ("name", "prompt", "tokenizer"):
        text_field(data.get(name), name)
    problem = name_problem(data["name"])
    if problem:
        raise SpecError(f"name {data['name']!r} cannot name a run folder: {problem}")
    vision, backbone = data["vision"], data["backbone"]
    text_field(vision.get("kind"), "vision.kind")
    whole(vision.get("resolution"), "vision.resolution", "resolution")
    whole(vision.get("patch", 14), "vision.patch", "patch")
    if vision.get("patch", 14) > vision["resolution"]:
        raise SpecError(f"vision.patch ({vision.get('patch', 14)}) is larger than vision.resolution "
                        f"({vision['resolution']})")
    dims = vision.get("dims", {})
    if not isinstance(dims, dict):
        raise SpecError("vision.dims must be an object of towers")
    for tower, sizes in dims.items():
        if not isinstance(sizes, dict):
            raise SpecError(f"vision.dims.{tower} must be an object")
        for key in ("width", "depth", "heads", "mlp"):
            whole(sizes.get(key), f"vision.dims.{tower}.{key}", key)
        whole(sizes.get("registers", 0), f"vision.dims.{tower}.registers", "registers", low=0)
    text_field(data["projector"].get("kind"), "projector.kind")
    check_options(data["projector"].get("options", {}), "projector.options")
    text_field(backbone.get("kind"), "backbone.kind")
    for key in ("hidden", "layers", "vocab"):
        whole(backbone.get(key), f"backbone.{key}", key)
    check_options(backbone.get("options", {}), "backbone.options")


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
        """The spec JSON describes, checked first (check_spec: SpecError naming the field)."""
        check_spec(data)
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
