"""LLaVA-1.5 as llava-hf publishes it (hub `llava-hf/llava-1.5-7b-hf`): config.json (model_type llava) and
safetensors, sharded behind model.safetensors.index.json (or one model.safetensors), read memory-mapped.

Key layouts accepted, all mapped onto qbench's CLIP tower, projector and Llama backbone:
hub files (pre-v5)      vision_tower.vision_model.*, multi_modal_projector.linear_{1,2}.*, language_model.model.*,
                        language_model.lm_head.weight
transformers-5 saves    vision_tower.* (the rest as above)
transformers-5 modules  model.vision_tower.*, model.multi_modal_projector.*, model.language_model.*, lm_head.weight
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from qbench.checkpoints.base import CheckpointMismatch, load_state, open_safetensors
from qbench.checkpoints.convert import rename, require_parts
from qbench.hub import WeightsNotFound, resolve_file
from qbench.spec import VLMSpec
from qbench.vlm import VLM, build_vlm

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
PARTS = {"vision": "clip", "projector": "mlp", "backbone": "llama", "prompt": "llava"}
MODEL_CONFIG = {"model_type": "llava", "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
                "projector_hidden_act": "gelu"}  # what qbench's LLaVA modules compute
RULES = [
    (r"^(model\.)?vision_tower\.(vision_model\.)?", "vision.encoders.clip.model."),
    (r"^(model\.)?multi_modal_projector\.linear_1\.", "projector.mlp.0."),
    (r"^(model\.)?multi_modal_projector\.linear_2\.", "projector.mlp.2."),
    (r"^(language_model\.model|model\.language_model)\.", "backbone.model.model."),
    (r"^(language_model\.)?lm_head\.", "backbone.model.lm_head."),
]


def fetch(location: str, name: str) -> Path:
    """One file of the checkpoint: under a local directory, or of a hub repo ($QBENCH_HUB_DIR mirror, else the hub)."""
    root = Path(location)
    if root.is_file():
        raise CheckpointMismatch(f"{root} is a file; a llava-hf checkpoint is a directory ({CONFIG} + safetensors)")
    if not root.is_dir():
        return resolve_file(location, name)
    if not (root / name).is_file():
        raise WeightsNotFound(f"{root} has no {name}; a llava-hf checkpoint directory holds {CONFIG} and {INDEX} "
                              f"with its shards (or a single {SINGLE})")
    return root / name


def weight_files(location: str) -> list[Path]:
    """The safetensors files: the shards the index names, or the single file of a local directory."""
    if Path(location).is_dir() and not (Path(location) / INDEX).is_file():
        return [fetch(location, SINGLE)]
    index = fetch(location, INDEX)
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, AttributeError) as error:
        raise CheckpointMismatch(f"{index} is not a safetensors index with a weight_map ({error!r})") from None
    return [fetch(location, name) for name in names]


def check_config(path: Path) -> None:
    try:
        config = json.loads(path.read_text())
        wrong = [f"{field} {config.get(field)!r} (qbench computes {value!r})" for field, value in MODEL_CONFIG.items()
                 if config.get(field) != value]
    except (json.JSONDecodeError, AttributeError) as error:
        raise CheckpointMismatch(f"{path} is not a transformers config ({error!r})") from None
    if wrong:
        raise CheckpointMismatch(f"{path} does not describe a LLaVA-1.5 that qbench runs: " + ", ".join(wrong))


def with_local_tokenizer(spec: VLMSpec, location: str) -> VLMSpec:
    """The repo's own tokenizer when the checkpoint is a local directory holding one (else the preset's)."""
    local = Path(location).resolve()
    return spec.replace(tokenizer=str(local)) if (local / "tokenizer_config.json").is_file() else spec


def load_llava_hf(spec: VLMSpec, location: str, device: torch.device, dtype: torch.dtype) -> VLM:
    """A LLaVA-structured preset with the llava-hf weights at `location` (hub id or local directory)."""
    require_parts(spec, "LLaVA", **PARTS)
    check_config(fetch(location, CONFIG))
    files = weight_files(location)
    with contextlib.ExitStack() as stack:
        handles = {}  # original key -> the open (memory-mapped) file holding it
        for file in files:
            opened = stack.enter_context(open_safetensors(file))
            for key in opened.keys():
                if key in handles:
                    raise CheckpointMismatch(f"{key} is in more than one of the safetensors files of {location}")
                handles[key] = opened
        original = rename({key: key for key in handles}, RULES)  # qbench key -> original key
        shapes = {new: tuple(handles[old].get_slice(old).get_shape()) for new, old in original.items()}
        vlm = build_vlm(with_local_tokenizer(spec, location), device, dtype, init=False)
        return load_state(vlm, shapes, lambda key: handles[original[key]].get_tensor(original[key]), source=location)


def is_llava_hf(path: Path) -> bool:
    config = path / CONFIG
    try:
        return config.is_file() and json.loads(config.read_text()).get("model_type") == "llava"
    except (json.JSONDecodeError, AttributeError):
        return False
