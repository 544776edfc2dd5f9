"""Weights: random, qbench's own format, and each system's published checkpoint format, behind one `load_vlm`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from qbench.checkpoints.base import CheckpointMismatch
from qbench.checkpoints.hub import WeightsNotFound
from qbench.checkpoints.native import is_native, load_native, read_spec, save_native
from qbench.presets import get_preset
from qbench.registry import Registry
from qbench.spec import VLMSpec
from qbench.vlm import VLM, build_vlm

Loader = Callable[[VLMSpec, str, torch.device, torch.dtype], VLM]
FORMATS: Registry[Loader] = Registry("checkpoint format")
FORMATS.register("random")(lambda spec, location, device, dtype: build_vlm(spec, device, dtype))
FORMATS.register("native")(load_native)


def parse_source(spec: VLMSpec, checkpoint: str | None) -> tuple[str, str]:
    """(format, location) for `--checkpoint`: None (the preset's own weights), 'random', 'FORMAT:HUB_ID_OR_PATH',
    or a path whose format is recognised (a qbench directory, else the preset's published format)."""
    source = checkpoint or spec.weights
    if source == "random":
        return "random", ""
    if Path(source).exists():
        if is_native(Path(source)):
            return "native", source
        published = spec.weights.partition(":")[0]
        if published == "random":
            raise CheckpointMismatch(f"{source} is not a qbench checkpoint (spec.json + model.safetensors), and "
                                     f"{spec.name} has no published format")
        return published, source
    fmt, sep, location = source.partition(":")
    if not sep or fmt not in FORMATS:
        raise WeightsNotFound(f"checkpoint {source!r} is neither an existing path nor FORMAT:LOCATION with a format "
                              f"from {', '.join(FORMATS.names())}")
    return fmt, location


def load_vlm(model: str, checkpoint: str | None = None, device: str | torch.device = "cpu",
             dtype: torch.dtype | str | None = None) -> VLM:
    """A ready VLM: `model` is a preset name or alias, or a qbench checkpoint directory."""
    dtype = resolve_dtype(dtype, device)
    if Path(model).is_dir() and is_native(Path(model)):
        return load_native(None, model, torch.device(device), dtype).eval()
    spec = get_preset(model)
    fmt, location = parse_source(spec, checkpoint)
    return FORMATS[fmt](spec, location, torch.device(device), dtype).eval()


DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def resolve_dtype(dtype: torch.dtype | str | None, device: str | torch.device) -> torch.dtype:
    """bf16 on a GPU and fp32 on the CPU unless asked otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from: {', '.join(DTYPES)}")
    return DTYPES[dtype]


__all__ = ["FORMATS", "CheckpointMismatch", "WeightsNotFound", "load_vlm", "save_native", "read_spec",
           "resolve_dtype"]
