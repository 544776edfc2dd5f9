"""Where a training run's weights come from: another model's parts.

A run starts from random weights, or from a model `qbench run` could load: a preset with its published weights
(e.g. `cobra`, through the hub or $QBENCH_HUB_DIR) or a qbench checkpoint folder. It takes every part that the
model builds alike (vision tower, projector, LLM), and the rest start random. Example: Q-Mamba's projector trained
on Cobra's published towers and Mamba LLM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qbench.checkpoints import ModelSource, load_vlm
from qbench.spec import VLMSpec
from qbench.vlm import VLM

PARTS = ("vision", "projector", "backbone")


@dataclass(frozen=True)
class Start:
    source: ModelSource  # a preset with its published weights (or --start-checkpoint's), or a qbench folder

    def parts_for(self, spec: VLMSpec) -> list[str]:
        """The parts `spec` builds as this start does; a clear error when they share none, or an LLM but not its
        tokenizer."""
        start, name = self.source.spec, self.source.model
        if self.source.random:
            raise ValueError(f"{name!r} has no published weights to start from; give its weights with "
                             f"--start-checkpoint or start from a trained qbench checkpoint folder")
        same = {"vision": spec.vision == start.vision, "backbone": spec.backbone == start.backbone}
        # a projector's shapes also follow the tower's features and the LLM's width
        same["projector"] = spec.projector == start.projector and same["vision"] and same["backbone"]
        parts = [part for part in PARTS if same[part]]
        if not parts:
            raise ValueError(f"{name!r} ({start.name}) shares no part with {spec.name!r}: its vision tower, "
                             f"projector and LLM are all built differently, so there is nothing to start from")
        if "backbone" in parts and spec.tokenizer != start.tokenizer:
            raise ValueError(f"{name!r}'s LLM reads tokenizer {start.tokenizer!r}, {spec.name!r} uses "
                             f"{spec.tokenizer!r}")
        return parts

    def to_dict(self, spec: VLMSpec) -> dict:
        return {"model": self.source.model, "checkpoint": self.source.checkpoint, "parts": self.parts_for(spec)}

    def copy_into(self, vlm: VLM, parts: list[str]) -> None:
        """Load the start's weights into `parts` of `vlm` (those `parts_for` found shared)."""
        source = load_vlm(self.source, device=vlm.device, dtype=torch.float32)
        for part in parts:
            getattr(vlm, part).load_state_dict(getattr(source, part).state_dict())
