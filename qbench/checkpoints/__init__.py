"""Weights: random, qbench's own format, and each system's published checkpoint format, behind one `load_vlm`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from qbench.checkpoints.base import CheckpointMismatch, open_safetensors
from qbench.checkpoints.cobra import is_cobra, load_cobra
from qbench.checkpoints.hub import WeightsNotFound
from qbench.checkpoints.llava_hf import is_llava_hf, load_llava_hf, with_local_tokenizer
from qbench.checkpoints.mlmamba import is_mlmamba, load_mlmamba
from qbench.checkpoints.native import WEIGHTS_FILE, is_native, load_native, read_spec, save_native
from qbench.presets import get_preset
from qbench.registry import Registry
from qbench.spec import VLMSpec
from qbench.tokenizers import check_tokenizer
from qbench.vlm import VLM, build_vlm

Loader = Callable[[VLMSpec, str, torch.device, torch.dtype], VLM]
FORMATS: Registry[Loader] = Registry("checkpoint format")
FORMATS.register("random")(lambda spec, location, device, dtype: build_vlm(spec, device, dtype))
FORMATS.register("native")(load_native)
FORMATS.register("cobra")(load_cobra)
FORMATS.register("mlmamba")(load_mlmamba)
FORMATS.register("llava-hf")(load_llava_hf)

# How each published format looks on disk, to recognise a plain path: format -> test of a local path.
LAYOUTS: Registry[Callable[[Path], bool]] = Registry("checkpoint layout")
LAYOUTS.register("cobra")(is_cobra)  # cobra+3b/config.json + .pt with the projector and llm_backbone groups
LAYOUTS.register("mlmamba")(is_mlmamba)  # latest-checkpoint.pt with the four ML-Mamba groups
LAYOUTS.register("llava-hf")(is_llava_hf)  # config.json with model_type llava


def parse_source(spec: VLMSpec, checkpoint: str | None) -> tuple[str, str]:
    """(format, location) for `--checkpoint`: None (the preset's own weights), 'random', 'FORMAT:HUB_ID_OR_PATH',
    or a path whose format is recognised: a qbench directory, a published layout (LAYOUTS; the preset's own format
    first), else the preset's published format, whose loader says what is missing."""
    source = checkpoint or spec.weights
    if source == "random":
        return "random", ""
    if Path(source).exists():
        return local_format(spec, Path(source)), source
    fmt, sep, location = source.partition(":")
    if not sep or fmt not in FORMATS:
        raise WeightsNotFound(f"checkpoint {source!r} is neither an existing path nor FORMAT:LOCATION with a format "
                              f"from {', '.join(FORMATS.names())}")
    return fmt, location


def local_format(spec: VLMSpec, path: Path) -> str:
    if is_native(path):
        return "native"
    published = spec.weights.partition(":")[0]
    for fmt in sorted(LAYOUTS.names(), key=lambda name: name != published):
        if LAYOUTS[fmt](path):
            return fmt
    if published == "random":
        raise CheckpointMismatch(f"{path} is neither a qbench checkpoint (spec.json + model.safetensors) nor a "
                                 f"published checkpoint qbench recognises ({', '.join(LAYOUTS.names())}); "
                                 "name its format as FORMAT:PATH")
    return published


def model_spec(model: str) -> VLMSpec:
    """The spec of a preset, alias or qbench checkpoint folder; UnknownName lists the presets."""
    return read_spec(model) if is_native(Path(model)) else get_preset(model)


def check_ready(model: str, checkpoint: str | None = None) -> None:
    """Fail before data is loaded or a model built when what `load_vlm(model, checkpoint)` reads is missing or
    damaged, as far as a cheap look tells: the checkpoint's format, a qbench folder's spec.json and safetensors
    header, the tokenizer (a llava-hf folder's own, else the spec's). The loaders check keys and shapes later."""
    folder = model if is_native(Path(model)) else None
    if folder is None:
        spec = get_preset(model)
        fmt, location = parse_source(spec, checkpoint)
        folder = location if fmt == "native" else None
        tokenizer = with_local_tokenizer(spec, location).tokenizer if fmt == "llava-hf" else spec.tokenizer
    if folder is not None:
        tokenizer = read_spec(folder).tokenizer
        with open_safetensors(Path(folder) / WEIGHTS_FILE):
            pass
    check_tokenizer(tokenizer)


def load_vlm(model: str, checkpoint: str | None = None, device: str | torch.device = "cpu",
             dtype: torch.dtype | str | None = None, seed: int = 0) -> VLM:
    """A ready VLM: `model` is a preset name or alias, or a qbench checkpoint directory. Random weights (a preset
    without a checkpoint) are drawn with `seed`, whoever loads them; the caller's random state is left alone."""
    dtype = resolve_dtype(dtype, device)
    if is_native(Path(model)):
        return load_native(None, model, torch.device(device), dtype).eval()
    spec = get_preset(model)
    fmt, location = parse_source(spec, checkpoint)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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


__all__ = [
    "FORMATS",
    "LAYOUTS",
    "CheckpointMismatch",
    "WeightsNotFound",
    "check_ready",
    "load_vlm",
    "model_spec",
    "read_spec",
    "resolve_dtype",
    "save_native",
]
