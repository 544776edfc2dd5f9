"""A plain ViT (transformers ViTModel): the small tower for quick ablations."""

from __future__ import annotations

import torch
from torch import nn
from transformers import ViTConfig, ViTModel

from qbench.spec import ViTDims
from qbench.vision.base import Encoder
from qbench.vision.transforms import HALF, ImageTransform


class VitEncoder(Encoder):
    hf_class = ViTModel
    prefix_tokens = 1  # CLS

    @staticmethod
    def make_transform(resolution: int) -> ImageTransform:
        return ImageTransform(resolution, HALF, HALF)

    @classmethod
    def config(cls, dims: ViTDims, resolution: int, patch: int) -> ViTConfig:
        return ViTConfig(
            hidden_size=dims.width,
            num_hidden_layers=dims.depth,
            num_attention_heads=dims.heads,
            intermediate_size=dims.mlp,
            image_size=resolution,
            patch_size=patch,
        )

    @classmethod
    def random(cls, dims: ViTDims, resolution: int, patch: int, transform: ImageTransform) -> "VitEncoder":
        return cls(ViTModel(cls.config(dims, resolution, patch), add_pooling_layer=False), transform, patch)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        resize = pixels.shape[-1] != self.model.config.image_size
        return self.model.embeddings(pixels, interpolate_pos_encoding=resize)

    def blocks(self) -> nn.ModuleList:
        return self.model.encoder.layer
