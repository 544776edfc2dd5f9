"""Eager greedy decoding: prefill, then one backbone step per token, launched op by op."""

from __future__ import annotations

import torch

from qbench.backbones import Backbone


@torch.inference_mode()
def greedy_decode(backbone: Backbone, embeds: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                  eos_id: int | None = None) -> torch.Tensor:
    """[B, n] greedy tokens after the prompt; with `eos_id`, a finished row repeats EOS and all stop together."""
    state = backbone.new_state(embeds.shape[0], embeds.shape[1] + max_new_tokens)
    logits = backbone.prefill(embeds, mask, state)
    finished = torch.zeros(embeds.shape[0], dtype=torch.bool, device=embeds.device)
    tokens = []
    for index in range(max_new_tokens):
        token = logits.argmax(-1)
        if eos_id is not None:
            token = token.masked_fill(finished, eos_id)
            finished |= token == eos_id
        tokens.append(token)
        if index == max_new_tokens - 1 or (eos_id is not None and bool(finished.all())):
            break
        logits = backbone.step(token, state)
    return torch.stack(tokens, dim=1)
