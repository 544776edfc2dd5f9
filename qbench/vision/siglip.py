"""SigLIP vision encoder (transformers SiglipVisionModel), mean/std 0.5, no CLS token."""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from qbench.spec import ViTDims
from qbench.vision.base import Encoder
from qbench.vision.transforms import HALF, ImageTransform


class SiglipEncoder(Encoder):
    hf_class = SiglipVisionModel
    prefix_tokens = 0

    @staticmethod
    def make_transform(resolution: int) -> ImageTransform:
        return ImageTransform(resolution, HALF, HALF)

    @classmethod
    def config(cls, dims: ViTDims, resolution: int, patch: int) -> SiglipVisionConfig:
        return SiglipVisionConfig(
            hidden_size=dims.width,
            num_hidden_layers=dims.depth,
            num_attention_heads=dims.heads,
            intermediate_size=dims.mlp,
            image_size=resolution,
            patch_size=patch,
        )

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        resize = pixels.shape[-1] != self.model.config.image_size
        return self.model.embeddings(pixels, interpolate_pos_encoding=resize)

    def blocks(self) -> nn.ModuleList:
        return self.model.encoder.layers

    def run_block(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return block(hidden, attention_mask=None)
