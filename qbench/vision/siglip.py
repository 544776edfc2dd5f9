"""SigLIP vision encoder (transformers SiglipVisionModel), mean/std 0.5, no CLS token."""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from qbench.spec import ViTDims
from qbench.vision.base import Encoder, vit_config_fields
from qbench.vision.transforms import HALF, ImageTransform


class SiglipEncoder(Encoder):
    hf_class = SiglipVisionModel
    prefix_tokens = 0

    @staticmethod
    def make_transform(resolution: int) -> ImageTransform:
        return ImageTransform(resolution, HALF, HALF)

    @classmethod
    def config(cls, dims: ViTDims, resolution: int, patch: int) -> SiglipVisionConfig:
        return SiglipVisionConfig(**vit_config_fields(dims, resolution, patch))

    def blocks(self) -> nn.ModuleList:
        return self.model.encoder.layers

    def run_block(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return block(hidden, attention_mask=None)
