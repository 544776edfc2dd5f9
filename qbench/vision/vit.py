"""A plain ViT (transformers ViTModel): the small tower for quick ablations."""

from __future__ import annotations

from torch import nn
from transformers import ViTConfig, ViTModel

from qbench.spec import ViTDims
from qbench.vision.base import Encoder, vit_config_fields
from qbench.vision.transforms import HALF, ImageTransform


class VitEncoder(Encoder):
    hf_class = ViTModel
    prefix_tokens = 1  # CLS

    @staticmethod
    def make_transform(resolution: int) -> ImageTransform:
        return ImageTransform(resolution, HALF, HALF)

    @classmethod
    def config(cls, dims: ViTDims, resolution: int, patch: int) -> ViTConfig:
        return ViTConfig(**vit_config_fields(dims, resolution, patch))

    @classmethod
    def random(cls, dims: ViTDims, resolution: int, patch: int, transform: ImageTransform) -> VitEncoder:
        return cls(ViTModel(cls.config(dims, resolution, patch), add_pooling_layer=False), transform, patch)

    def blocks(self) -> nn.ModuleList:
        return self.model.layers
