"""Where a training run's weights come from: another model's parts.

A run starts from random weights, or from a model `qbench run` could load: a preset with its published weights
(e.g. `cobra`, through the hub or $QBENCH_HUB_DIR) or a qbench checkpoint folder. It takes every part that the
model builds alike (vision tower, projector, LLM), and the rest start random. Example: Q-Mamba's projector trained
on Cobra's published towers and Mamba LLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from qbench.checkpoints import load_vlm, model_spec
from qbench.checkpoints.native import is_native
from qbench.spec import VLMSpec
from qbench.vlm import VLM

PARTS = ("vision", "projector", "backbone")


@dataclass(frozen=True)
class Start:
    model: str  # a preset name or alias, or a qbench checkpoint folder
    checkpoint: str | None = None  # a preset's weights from elsewhere, as `qbench run --checkpoint` takes them

    def parts_for(self, spec: VLMSpec) -> list[str]:
        """The parts `spec` builds as this start does; a clear error when they share none, or an LLM but not its
        tokenizer."""
        start = model_spec(self.model)
        if start.weights == "random" and self.checkpoint is None and not is_native(Path(self.model)):
            raise ValueError(f"{self.model!r} has no published weights to start from; give its weights with "
                             f"--start-checkpoint or start from a trained qbench checkpoint folder")
        same = {"vision": spec.vision == start.vision, "backbone": spec.backbone == start.backbone}
        # a projector's shapes also follow the tower's features and the LLM's width
        same["projector"] = spec.projector == start.projector and same["vision"] and same["backbone"]
        parts = [part for part in PARTS if same[part]]
        if not parts:
            raise ValueError(f"{self.model!r} ({start.name}) shares no part with {spec.name!r}: its vision tower, "
                             f"projector and LLM are all built differently, so there is nothing to start from")
        if "backbone" in parts and spec.tokenizer != start.tokenizer:
            raise ValueError(f"{self.model!r}'s LLM reads tokenizer {start.tokenizer!r}, {spec.name!r} uses "
                             f"{spec.tokenizer!r}")
        return parts

    def to_dict(self, spec: VLMSpec) -> dict:
        return {"model": self.model, "checkpoint": self.checkpoint, "parts": self.parts_for(spec)}

    def copy_into(self, vlm: VLM, parts: list[str]) -> None:
        """Load the start's weights into `parts` of `vlm` (those `parts_for` found shared)."""
        source = load_vlm(self.model, self.checkpoint, vlm.device, torch.float32)
        for part in parts:
            getattr(vlm, part).load_state_dict(getattr(source, part).state_dict())
