"""CLIP vision encoder (transformers CLIPVisionModel) as LLaVA uses it: pad to square, CLIP normalisation."""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from qbench.spec import ViTDims
from qbench.vision.base import Encoder, vit_config_fields
from qbench.vision.transforms import CLIP_MEAN, CLIP_STD, ImageTransform


class ClipEncoder(Encoder):
    hf_class = CLIPVisionModel
    prefix_tokens = 1  # CLS

    @staticmethod
    def make_transform(resolution: int) -> ImageTransform:
        return ImageTransform(resolution, CLIP_MEAN, CLIP_STD, pad_to_square=True)

    @classmethod
    def config(cls, dims: ViTDims, resolution: int, patch: int) -> CLIPVisionConfig:
        return CLIPVisionConfig(**vit_config_fields(dims, resolution, patch), hidden_act="quick_gelu")

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.pre_layrnorm(super().embed(pixels))

    def blocks(self) -> nn.ModuleList:
        return self.model.encoder.layers

    def run_block(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return block(hidden, attention_mask=None)
