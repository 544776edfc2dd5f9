"""Projectors: visual features -> LLM embeddings. Registry maps a name to the class built with spec options."""

from __future__ import annotations

from qbench.projectors.base import Projector
from qbench.projectors.ldp import LDPProjector
from qbench.projectors.mlp import FusedMLPProjector, MLPProjector
from qbench.projectors.msc import MSCProjector
from qbench.projectors.qmamba import QMambaProjector
from qbench.registry import Registry
from qbench.spec import ProjectorSpec

PROJECTORS: Registry[type[Projector]] = Registry("projector")
PROJECTORS.register("mlp")(MLPProjector)
PROJECTORS.register("fused-mlp")(FusedMLPProjector)
PROJECTORS.register("ldp")(LDPProjector)
PROJECTORS.register("msc")(MSCProjector)
PROJECTORS.register("qmamba")(QMambaProjector)


def build_projector(spec: ProjectorSpec, in_dim: int, out_dim: int) -> Projector:
    return PROJECTORS[spec.kind](in_dim, out_dim, **spec.options)


__all__ = ["PROJECTORS", "Projector", "build_projector"]
