"""Cobra's published checkpoint (hub `han1997/cobra`): `cobra+3b/config.json` (the training config) and
`cobra+3b/checkpoints/latest-checkpoint.pt` = {"model": {"projector", "llm_backbone"}}.

projector.{0,2,4}.*    (fused-gelu-mlp)  -> projector.mlp.{0,2,4}.*
llm.backbone.*, llm.lm_head.weight (mamba_ssm MambaLMHeadModel, Mamba-1) -> backbone.model.* (transformers
MambaForCausalLM; `backbone.embedding` -> `backbone.embeddings`). The towers load from their own hub ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from qbench.checkpoints.base import CheckpointMismatch, load_mapping
from qbench.checkpoints.convert import mamba_ssm_lm, require_parts
from qbench.checkpoints.prismatic import (
    flatten,
    locate,
    read_groups,
    recognises,
    tower_weights,
)
from qbench.hub import resolve_file
from qbench.spec import VLMSpec
from qbench.vlm import VLM, build_vlm

HUB_CONFIG = "cobra+3b/config.json"
HUB_CHECKPOINT = "cobra+3b/checkpoints/latest-checkpoint.pt"
GROUPS = {"projector", "llm_backbone"}
PARTS = {"vision": "dinosiglip", "projector": "fused-mlp", "backbone": "mamba", "prompt": "zephyr"}
MODEL_CONFIG = {"arch_specifier": "no-align+fused-gelu-mlp", "vision_backbone_id": "dinosiglip-vit-so-384px",
                "llm_backbone_id": "mamba-2.8b-zephyr"}  # the config.json "model" fields that name the parts
RULES = {"projector": [(r"^projector\.(?=\d)", "projector.mlp.")], "llm_backbone": mamba_ssm_lm("llm.")}


def find_config(location: str, checkpoint: Path) -> Path | None:
    """The training config: in the hub repo, or beside the run's checkpoints/ folder (optional for a bare .pt)."""
    if not Path(location).exists():
        return resolve_file(location, HUB_CONFIG)
    config = checkpoint.parent.parent / "config.json"
    return config if config.is_file() else None


def check_config(path: Path) -> None:
    """Refuse a Cobra variant whose parts are not the preset's (e.g. cobra-siglip+3b, cobra-ldpnet+3b)."""
    try:
        model = json.loads(path.read_text())["model"]
        wrong = [f"{field} {model.get(field)!r} (qbench reads {value!r})" for field, value in MODEL_CONFIG.items()
                 if model.get(field) != value]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointMismatch(f"{path} is not a Cobra training config with a 'model' section ({error!r})") from None
    if wrong:
        raise CheckpointMismatch(f"{path} describes {model.get('model_id')!r} with " + ", ".join(wrong))


def load_cobra(spec: VLMSpec, location: str, device: torch.device, dtype: torch.dtype) -> VLM:
    """A Cobra-structured preset with the published weights at `location` (hub id, local copy, or the .pt)."""
    require_parts(spec, "Cobra", **PARTS)
    checkpoint = locate(location, HUB_CHECKPOINT)
    config = find_config(location, checkpoint)
    if config is not None:
        check_config(config)
    state = flatten(read_groups(checkpoint, GROUPS, "Cobra"), RULES)
    vlm = build_vlm(spec, device, dtype, init=False, tower_weights=tower_weights)
    return load_mapping(vlm, state, skip_prefixes=("vision.",), source=str(checkpoint))


def is_cobra(path: Path) -> bool:
    return recognises(path, HUB_CHECKPOINT, GROUPS)
