"""Decode engines: the same greedy, fixed-state decode for every backbone, `eager` or `graph` (CUDA graph;
`graph-nocompile` without torch.compile's fusion of the Llama step)."""

from __future__ import annotations

import torch

from qbench.backbones import Backbone
from qbench.engine.eager import EagerDecoder, greedy
from qbench.engine.graph import GraphDecoder, GraphUnavailable, PlainGraphDecoder
from qbench.registry import Registry

ENGINES: Registry[type[EagerDecoder]] = Registry("engine")
ENGINES.register("eager")(EagerDecoder)
ENGINES.register("graph")(GraphDecoder)
ENGINES.register("graph-nocompile")(PlainGraphDecoder)


def make_decoder(engine: str, backbone: Backbone, batch: int, max_len: int) -> EagerDecoder:
    """A decoder for prompts of `batch` sequences and at most `max_len` tokens with what they generate."""
    return ENGINES[engine](backbone, batch, max_len)


def greedy_decode(backbone: Backbone, embeds: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                  eos_id: int | None = None, engine: str = "eager") -> torch.Tensor:
    """[B, n] greedy tokens after the prompt, decoded by `engine`."""
    decoder = make_decoder(engine, backbone, embeds.shape[0], embeds.shape[1] + max_new_tokens)
    return greedy(decoder, embeds, mask, max_new_tokens, eos_id)


__all__ = ["ENGINES", "EagerDecoder", "GraphDecoder", "GraphUnavailable", "greedy", "greedy_decode", "make_decoder"]
