"""A model as the user names it (`--model`, `--checkpoint`, `--seed`), resolved once into what builds and loads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from qbench.checkpoints.base import CheckpointMismatch
from qbench.checkpoints.cobra import is_cobra, load_cobra
from qbench.checkpoints.llava_hf import is_llava_hf, load_llava_hf, with_local_tokenizer
from qbench.checkpoints.mlmamba import is_mlmamba, load_mlmamba
from qbench.checkpoints.native import is_native, load_native, read_spec
from qbench.hub import WeightsNotFound
from qbench.presets import get_preset
from qbench.registry import Registry
from qbench.spec import VLMSpec
from qbench.vlm import VLM, build_vlm

RANDOM = "random"
NATIVE = "native"

Loader = Callable[[VLMSpec, str, torch.device, torch.dtype], VLM]
FORMATS: Registry[Loader] = Registry("checkpoint format")
FORMATS.register(RANDOM)(lambda spec, location, device, dtype: build_vlm(spec, device, dtype))
FORMATS.register(NATIVE)(load_native)
FORMATS.register("cobra")(load_cobra)
FORMATS.register("mlmamba")(load_mlmamba)
FORMATS.register("llava-hf")(load_llava_hf)

# How each published format looks on disk, to recognise a plain path: format -> test of a local path.
LAYOUTS: Registry[Callable[[Path], bool]] = Registry("checkpoint layout")
LAYOUTS.register("cobra")(is_cobra)  # cobra+3b/config.json + .pt with the projector and llm_backbone groups
LAYOUTS.register("mlmamba")(is_mlmamba)  # latest-checkpoint.pt with the four ML-Mamba groups
LAYOUTS.register("llava-hf")(is_llava_hf)  # config.json with model_type llava


@dataclass(frozen=True)
class ModelSource:
    """What builds and loads a model: its spec, the format and location of its weights, its tokenizer and the seed
    of random weights."""

    model: str  # as the user named it: a preset, an alias or a qbench checkpoint folder
    spec: VLMSpec
    format: str  # random, native or a published format (checkpoints.FORMATS)
    location: str  # the weights' hub id or path; "" for random weights
    tokenizer: str  # what the tokenizer loads from: a llava-hf folder's own, else the spec's
    checkpoint: str | None = None  # `--checkpoint` as given (None: the preset's own weights)
    seed: int = 0  # of random weights

    @property
    def random(self) -> bool:
        return self.format == RANDOM

    @property
    def weights(self) -> str:
        """Where the weights come from, as a run records it: 'random', a path, or FORMAT:HUB_ID_OR_PATH."""
        if self.random:
            return RANDOM
        return self.checkpoint or (self.model if self.own_folder else self.spec.weights)

    @property
    def own_folder(self) -> bool:
        """A qbench checkpoint folder given as the model: built from its own spec."""
        return self.format == NATIVE and self.location == self.model


def resolve_source(model: str, checkpoint: str | None = None, seed: int = 0) -> ModelSource:
    """`model` a preset, alias or qbench checkpoint folder; `checkpoint` None (the preset's own weights), 'random',
    'FORMAT:HUB_ID_OR_PATH' or a path whose format is recognised. UnknownName lists the presets."""
    if is_native(Path(model)):
        spec = read_spec(model)
        return ModelSource(model, spec, NATIVE, model, spec.tokenizer, checkpoint, seed)
    spec = get_preset(model)
    fmt, location = parse_checkpoint(spec, checkpoint)
    tokenizer = with_local_tokenizer(spec, location).tokenizer if fmt == "llava-hf" else spec.tokenizer
    return ModelSource(model, spec, fmt, location, tokenizer, checkpoint, seed)


def parse_checkpoint(spec: VLMSpec, checkpoint: str | None) -> tuple[str, str]:
    """(format, location) of `--checkpoint` for a preset: its own weights, random, FORMAT:LOCATION, or a path: a
    qbench folder, a published layout (LAYOUTS; the preset's own format first), else the preset's published format,
    whose loader says what is missing."""
    source = checkpoint or spec.weights
    if source == RANDOM:
        return RANDOM, ""
    if Path(source).exists():
        return local_format(spec, Path(source)), source
    fmt, sep, location = source.partition(":")
    if not sep or fmt not in FORMATS:
        raise WeightsNotFound(f"checkpoint {source!r} is neither an existing path nor FORMAT:LOCATION with a format "
                              f"from {', '.join(FORMATS.names())}")
    return fmt, location


def local_format(spec: VLMSpec, path: Path) -> str:
    if is_native(path):
        return NATIVE
    published = spec.weights.partition(":")[0]
    for fmt in sorted(LAYOUTS.names(), key=lambda name: name != published):
        if LAYOUTS[fmt](path):
            return fmt
    if published == RANDOM:
        raise CheckpointMismatch(f"{path} is neither a qbench checkpoint (spec.json + model.safetensors) nor a "
                                 f"published checkpoint qbench recognises ({', '.join(LAYOUTS.names())}); "
                                 "name its format as FORMAT:PATH")
    return published
