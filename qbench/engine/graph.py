"""CUDA-graph decoding: one backbone step captured once over static buffers, replayed for every token.

The captured step reads and writes one fixed set of state tensors (Mamba's conv/SSM state, the Transformer's static
KV cache). Each new prompt is prefilled eagerly into a fresh state whose tensors are then copied into the captured ones.
"""

from __future__ import annotations

import torch

from qbench.backbones import Backbone
from qbench.backbones.decode import EagerDecoder, check_shape
from qbench.backbones.state import copy_state

WARMUP_STEPS = 3  # eager steps before capture: compilation, Triton autotuning and lazy allocations happen outside


class GraphUnavailable(RuntimeError):
    """The graph engine was asked for on a device that has no CUDA graphs."""


class GraphDecoder(EagerDecoder):
    """The step captured once; a backbone whose step is a long chain of small ops (`compiled_step`) is fused by
    torch.compile first."""

    compiles = True

    def __init__(self, backbone: Backbone, batch: int, max_len: int):
        device = next(backbone.parameters()).device
        if device.type != "cuda":
            raise GraphUnavailable(f"the 'graph' engine captures CUDA graphs and needs a CUDA device; the model is on "
                                   f"{device.type!r}: use --engine eager or --device cuda")
        super().__init__(backbone, batch, max_len)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.ids = torch.zeros(batch, dtype=torch.long, device=device)
        self.logits: torch.Tensor | None = None
        self.compiled = self.compiles and backbone.compiled_step

    @property
    def kernel_note(self) -> str:
        return "CUDA graph" + (" of a torch.compile-fused step" if self.compiled else "")

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_shape(self, embeds)
        fresh = self.backbone.new_state(self.batch, self.max_len)
        logits = self.backbone.prefill(embeds, mask, fresh)
        if self.graph is None:
            self.capture(embeds, mask)
        copy_state(self.backbone, fresh, self.state)
        return logits

    def capture(self, embeds: torch.Tensor, mask: torch.Tensor) -> None:
        """Prefill the static state once (so every state tensor exists), warm up, and capture one step."""
        self.state = self.backbone.new_state(self.batch, self.max_len)
        self.backbone.prefill(embeds, mask, self.state)
        self.capture_step()

    def capture_step(self) -> None:
        """Warm up and capture one step over `self.state`, which a prefill has already filled."""
        step = torch.compile(self.backbone.step, dynamic=False) if self.compiled else self.backbone.step
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                step(self.ids, self.state)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = step(self.ids, self.state)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(ids)
        self.graph.replay()
        return self.logits


class PlainGraphDecoder(GraphDecoder):
    """The graph engine without torch.compile: every backbone's own step captured as it is. Compiling costs about
    45 s per Llama batch size and length, too much for a sweep over many of them."""

    compiles = False
