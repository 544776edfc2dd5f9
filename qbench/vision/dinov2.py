"""DINOv2 ViT with register tokens (transformers Dinov2WithRegistersModel), ImageNet normalisation."""

from __future__ import annotations

import torch
from torch import nn
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

from qbench.spec import ViTDims
from qbench.vision.base import Encoder
from qbench.vision.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform


class Dinov2Encoder(Encoder):
    hf_class = Dinov2WithRegistersModel

    @property
    def prefix_tokens(self) -> int:  # CLS + registers
        return 1 + self.model.config.num_register_tokens

    @staticmethod
    def make_transform(resolution: int) -> ImageTransform:
        return ImageTransform(resolution, IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def config(cls, dims: ViTDims, resolution: int, patch: int) -> Dinov2WithRegistersConfig:
        return Dinov2WithRegistersConfig(
            hidden_size=dims.width,
            num_hidden_layers=dims.depth,
            num_attention_heads=dims.heads,
            mlp_ratio=dims.mlp // dims.width,
            num_register_tokens=dims.registers,
            image_size=resolution,
            patch_size=patch,
            layerscale_value=1e-5,
        )

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.embeddings(pixels)  # interpolates position embeddings itself

    def blocks(self) -> nn.ModuleList:
        return self.model.encoder.layer
