"""Greedy decoding over any backbone: the loop every engine shares, and its plain decoder (prefill, then one
backbone step per token, launched op by op). The engines (qbench.engine) add decoders that capture the step."""

from __future__ import annotations

import torch

from qbench.backbones.base import Backbone
from qbench.backbones.state import DecodeState


class EagerDecoder:
    """A fresh state per prompt; each step runs the backbone's PyTorch ops one launch at a time."""

    def __init__(self, backbone: Backbone, batch: int, max_len: int):
        self.backbone, self.batch, self.max_len = backbone, batch, max_len
        self.state: DecodeState | None = None

    @property
    def kernel_note(self) -> str:
        return "eager"

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Load a prompt [B, L, D] (left-padded, `mask` [B, L]); logits of its last position [B, V]."""
        check_shape(self, embeds)
        self.state = self.backbone.new_state(self.batch, self.max_len)
        return self.backbone.prefill(embeds, mask, self.state)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """One token per sequence [B] in, logits [B, V] out."""
        return self.backbone.step(ids, self.state)


def check_shape(decoder: EagerDecoder, embeds: torch.Tensor) -> None:
    batch, length = embeds.shape[:2]
    if batch != decoder.batch or length >= decoder.max_len:
        raise ValueError(f"prompt of batch {batch} and {length} tokens does not fit a decoder made for batch "
                         f"{decoder.batch} and at most {decoder.max_len} tokens")


@torch.inference_mode()
def greedy(decoder: EagerDecoder, embeds: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
           eos_id: int | None = None) -> torch.Tensor:
    """[B, n] greedy tokens after the prompt; with `eos_id`, a finished row repeats EOS and all stop together."""
    return greedy_from(decoder, decoder.prefill(embeds, mask), max_new_tokens, eos_id)


def greedy_from(decoder: EagerDecoder, logits: torch.Tensor, max_new_tokens: int, eos_id: int | None = None,
                finished: torch.Tensor | None = None, limits: torch.Tensor | None = None) -> torch.Tensor:
    """[B, n] greedy tokens from the prompt's last logits [B, V] on, stepping `decoder`; rows `finished` from the
    start (e.g. a batch's padding rows) only repeat EOS and do not hold the others back; a row ends (then repeats
    EOS) after its own `limits` [B] tokens."""
    if finished is None:
        finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    tokens = []
    for index in range(max_new_tokens):
        token = logits.argmax(-1)
        if eos_id is not None:
            token = token.masked_fill(finished, eos_id)
            finished |= token == eos_id
            if limits is not None:
                finished |= limits <= index + 1
        tokens.append(token)
        if index == max_new_tokens - 1 or (eos_id is not None and bool(finished.all())):
            break
        logits = decoder.step(token)
    return torch.stack(tokens, dim=1)


def greedy_decode(backbone: Backbone, embeds: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                  eos_id: int | None = None, decoder: type[EagerDecoder] = EagerDecoder) -> torch.Tensor:
    """[B, n] greedy tokens after the prompt, decoded by a `decoder` made for it (the eager one, or an engine's)."""
    return greedy(decoder(backbone, embeds.shape[0], embeds.shape[1] + max_new_tokens), embeds, mask, max_new_tokens,
                  eos_id)
