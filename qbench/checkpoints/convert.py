"""Published checkpoints in qbench's terms: key renaming rules, and the check that a format fits a preset."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

from qbench.checkpoints.base import CheckpointMismatch
from qbench.spec import VLMSpec

T = TypeVar("T")
Rules = Sequence[tuple[str, str]]  # (regex matched at the start of an original key, its replacement)


def rename(state: Mapping[str, T], rules: Rules, unmatched_prefix: str = "") -> dict[str, T]:
    """Each key through the first rule that matches it. A key that no rule matches keeps its own name (behind
    `unmatched_prefix`), so that the fit check reports it as unexpected, named as it is in the file."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    renamed: dict[str, T] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = next((p.sub(r, key, count=1) for p, r in compiled if p.match(key)), unmatched_prefix + key)
        if new in renamed:
            raise CheckpointMismatch(f"the checkpoint holds both {origin[new]!r} and {key!r}, which are the same "
                                     f"weight ({new})")
        renamed[new], origin[new] = value, key
    return renamed


def mamba_ssm_lm(prefix: str) -> Rules:
    """mamba_ssm's MambaLMHeadModel keys (behind `prefix`) onto transformers' Mamba/Mamba2ForCausalLM inside qbench's
    backbone: the same names, except that mamba_ssm's `backbone.embedding` is transformers' `backbone.embeddings`."""
    start = "^" + re.escape(prefix)
    return [(start + r"backbone\.embedding\.", "backbone.model.backbone.embeddings."),
            (start + r"(?=backbone\.|lm_head\.)", "backbone.model.")]


def require_parts(spec: VLMSpec, system: str, **kinds: str) -> None:
    """CheckpointMismatch unless `spec` has the parts a published format holds (vision=, projector=, backbone=,
    prompt= kinds): e.g. a Cobra checkpoint cannot fill a LLaVA preset."""
    have = {"vision": spec.vision.kind, "projector": spec.projector.kind, "backbone": spec.backbone.kind,
            "prompt": spec.prompt}
    wrong = [f"{part} {have[part]!r} where {system} has {kind!r}" for part, kind in kinds.items() if have[part] != kind]
    if wrong:
        raise CheckpointMismatch(f"a {system} checkpoint does not fit {spec.name}: it has " + ", ".join(wrong))
