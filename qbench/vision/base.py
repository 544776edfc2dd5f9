"""A vision tower: one or more ViT encoders run on the same image, features concatenated on channels."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from qbench.spec import ViTDims
from qbench.vision.transforms import ImageLike, ImageTransform, load_image


class Encoder(nn.Module, ABC):
    """One transformers ViT, returning the patch features of its second-to-last block (no final norm, no prefix)."""

    hf_class: type  # the transformers model class
    prefix_tokens: int = 0  # CLS and register tokens to drop

    def __init__(self, model: nn.Module, transform: ImageTransform, patch: int):
        super().__init__()
        self.model = model
        self.transform = transform
        self.patch = patch

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    @classmethod
    @abstractmethod
    def config(cls, dims: ViTDims, resolution: int, patch: int):
        """The transformers config for these dims."""

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Tokens entering the first block, position embeddings interpolated to the input size."""
        resize = pixels.shape[-1] != self.model.config.image_size
        return self.model.embeddings(pixels, interpolate_pos_encoding=resize)

    @abstractmethod
    def blocks(self) -> nn.ModuleList: ...

    def run_block(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return block(hidden)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(pixels)
        for block in list(self.blocks())[:-1]:  # features from the second-to-last block
            hidden = self.run_block(block, hidden)
        return hidden[:, self.prefix_tokens :]

    @classmethod
    def random(cls, dims: ViTDims, resolution: int, patch: int, transform: ImageTransform, **overrides) -> Encoder:
        """Random weights; `overrides` set config fields (e.g. the activation a tower's system was trained with)."""
        config = cls.config(dims, resolution, patch)
        for field, value in overrides.items():
            setattr(config, field, value)
        return cls(cls.hf_class(config), transform, patch)

    @classmethod
    def pretrained(cls, path: str, transform: ImageTransform, patch: int, **kwargs) -> Encoder:
        return cls(cls.hf_class.from_pretrained(path, **kwargs), transform, patch)


def vit_config_fields(dims: ViTDims, resolution: int, patch: int) -> dict:
    """The config fields that transformers' ViT-style vision configs share."""
    return {"hidden_size": dims.width, "num_hidden_layers": dims.depth, "num_attention_heads": dims.heads,
            "intermediate_size": dims.mlp, "image_size": resolution, "patch_size": patch}


class VisionTower(nn.Module):
    """Encoders on the same image; `preprocess` stacks each encoder's normalised pixels on the channel axis."""

    def __init__(self, encoders: dict[str, Encoder], resolution: int, patch: int):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.resolution = resolution
        self.patch = patch

    @property
    def grid(self) -> int:
        return self.resolution // self.patch

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def feature_dim(self) -> int:
        return sum(encoder.width for encoder in self.encoders.values())

    def preprocess(self, images: list[ImageLike]) -> torch.Tensor:
        """[B, 3 x encoders, H, W] float pixels; raises ImageError for an image that cannot be decoded."""
        decoded = [load_image(image) for image in images]
        return torch.stack(
            [torch.cat([encoder.transform(image) for encoder in self.encoders.values()]) for image in decoded]
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        chunks = pixels.split(3, dim=1)
        features = [encoder(chunk) for encoder, chunk in zip(self.encoders.values(), chunks)]
        return torch.cat(features, dim=-1)
