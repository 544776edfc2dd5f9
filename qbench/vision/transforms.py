"""Image preprocessing without torchvision: each encoder's own resize and normalisation."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

ImageLike = Union[Image.Image, str, Path, bytes]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageError(ValueError):
    """An image that cannot be read or decoded."""


@dataclass(frozen=True)
class ImageTransform:
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad_to_square: bool = False  # LLaVA: pad with the mean colour before resizing; otherwise squash

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.pad_to_square:
            image = expand_to_square(image, tuple(int(255 * m) for m in self.mean))
        image = image.resize((self.resolution, self.resolution), Image.Resampling.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 255.0
        pixels = torch.from_numpy(array).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (pixels - mean) / std


def expand_to_square(image: Image.Image, fill: tuple[int, ...]) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def load_image(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a PIL image, a path or encoded bytes; ImageError if it cannot be decoded."""
    try:
        if isinstance(image, (str, Path)):
            image = Image.open(image)
        elif isinstance(image, (bytes, bytearray)):
            image = Image.open(io.BytesIO(image))
        image.load()
        return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ImageError(f"cannot decode image: {error}") from error
