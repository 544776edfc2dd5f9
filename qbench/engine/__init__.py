"""Decode engines: the same greedy, fixed-state decode for every backbone, `eager` (qbench.backbones.decode) or `graph`
(CUDA graph; `graph-nocompile` without torch.compile's fusion of the step); and the answering engine (answering.py)."""

from __future__ import annotations

from qbench.backbones import Backbone
from qbench.backbones.decode import EagerDecoder, greedy
from qbench.engine.graph import GraphDecoder, GraphUnavailable, PlainGraphDecoder
from qbench.registry import Registry

ENGINES: Registry[type[EagerDecoder]] = Registry("engine")
ENGINES.register("eager")(EagerDecoder)
ENGINES.register("graph")(GraphDecoder)
ENGINES.register("graph-nocompile")(PlainGraphDecoder)


def make_decoder(engine: str, backbone: Backbone, batch: int, max_len: int) -> EagerDecoder:
    """A decoder for prompts of `batch` sequences and at most `max_len` tokens with what they generate."""
    return ENGINES[engine](backbone, batch, max_len)


__all__ = ["ENGINES", "EagerDecoder", "GraphDecoder", "GraphUnavailable", "greedy", "make_decoder"]
