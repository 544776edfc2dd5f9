"""ML-Mamba's published checkpoint (hub `huangwenjun1994/ML-Mamba`, file `latest-checkpoint.pt`) =
{"model": {"llm_backbone", "mlp", "bidirectional_mamba", "projector"}}, the groups of the released MLMambaVLM
(WenjunHuang94/ML-Mamba, mlmamba/models/vlms/mlmamba.py) with the Bidirectional_Mamba of its mamba_ssm fork
(WenjunHuang94/mamba, models/mixer_seq_simple.py, modules/block.py, modules/mamba2.py):

llm_backbone  mamba_ssm MambaLMHeadModel (Mamba-2) -> backbone.model.* (transformers Mamba2ForCausalLM)
mlp           0.{weight,bias} (Linear, GELU)       -> projector.mlp.0.*
bidirectional_mamba (2 blocks of bimamba_type "v2", then norm_f = LayerNorm):
  layers.{i}.mixer.{in_proj,norm,out_proj}.*       -> projector.blocks.{i}.mixer.*
  layers.{i}.mixer.{conv1d.*,dt_bias,A_log,D}      -> projector.blocks.{i}.mixer.forward_scan.*
  layers.{i}.mixer.{conv1d_b.*,dt_bias_b,A_log_b,D_b} -> projector.blocks.{i}.mixer.backward_scan.*
  layers.{i}.norm.{weight,bias} (LayerNorm)        -> projector.blocks.{i}.norm.*
  layers.{i}.mlp.w{1,2,3}.{weight,bias} (SwiGLU)   -> projector.blocks.{i}.ffn.*
  norm_f.{weight,bias}                             -> projector.norm.*
projector     projector.{0,2,4}.* (FusedMLPProjector) -> projector.projector.{0,2,4}.*

The released loader reads the projector group with strict=False; keys there outside projector.{0,2,4} are skipped
as it skips them (with a warning), while every other key must fit exactly.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from qbench.checkpoints.base import describe, load_mapping
from qbench.checkpoints.convert import mamba_ssm_lm, require_parts
from qbench.checkpoints.prismatic import (
    Groups,
    flatten,
    locate,
    read_groups,
    recognises,
    tower_weights,
)
from qbench.spec import VLMSpec
from qbench.vlm import VLM, build_vlm

HUB_CHECKPOINT = "latest-checkpoint.pt"
GROUPS = {"llm_backbone", "mlp", "bidirectional_mamba", "projector"}
PARTS = {"vision": "dinosiglip", "projector": "msc", "backbone": "mamba2", "prompt": "zephyr"}
BLOCK = r"^layers\.(\d+)\."
RULES = {
    "llm_backbone": mamba_ssm_lm(""),
    "mlp": [(r"^0\.", "projector.mlp.0.")],
    "bidirectional_mamba": [
        (BLOCK + r"mixer\.(conv1d|dt_bias|A_log|D)_b(?=\.|$)", r"projector.blocks.\1.mixer.backward_scan.\2"),
        (BLOCK + r"mixer\.(conv1d|dt_bias|A_log|D)(?=\.|$)", r"projector.blocks.\1.mixer.forward_scan.\2"),
        (BLOCK + r"mixer\.(?=in_proj\.|norm\.|out_proj\.)", r"projector.blocks.\1.mixer."),
        (BLOCK + r"norm\.", r"projector.blocks.\1.norm."),
        (BLOCK + r"mlp\.", r"projector.blocks.\1.ffn."),
        (r"^norm_f\.", "projector.norm."),
    ],
    "projector": [(r"^projector\.(?=\d)", "projector.projector.")],
}


def skip_unread_projector_keys(groups: Groups, path: Path) -> Groups:
    """Drop the projector-group keys that the released loader (strict=False) never reads, saying which."""
    projector = groups["projector"]
    skipped = sorted(key for key in projector if not key.startswith("projector."))
    if skipped:
        warnings.warn(f"{path}: skipping projector keys {describe(skipped)}, which the released ML-Mamba loader "
                      "ignores too (it loads that group with strict=False)", stacklevel=3)
    return {**groups, "projector": {k: v for k, v in projector.items() if k.startswith("projector.")}}


def load_mlmamba(spec: VLMSpec, location: str, device: torch.device, dtype: torch.dtype) -> VLM:
    """An ML-Mamba-structured preset with the published weights at `location` (hub id, local copy, or the .pt)."""
    require_parts(spec, "ML-Mamba", **PARTS)
    checkpoint = locate(location, HUB_CHECKPOINT)
    groups = skip_unread_projector_keys(read_groups(checkpoint, GROUPS, "ML-Mamba"), checkpoint)
    state = flatten(groups, RULES)
    vlm = build_vlm(spec, device, dtype, init=False, tower_weights=tower_weights)
    return load_mapping(vlm, state, skip_prefixes=("vision.",), source=str(checkpoint))


def is_mlmamba(path: Path) -> bool:
    return recognises(path, HUB_CHECKPOINT, GROUPS)
