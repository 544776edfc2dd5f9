"""transformers' own models decoding over their StaticCache: the Transformer (Llama) and the hybrids share this.

A StaticCache holds, per layer of the model's config (`layer_types`), a static KV cache (attention), a conv + SSM
state (Mamba), or both; its tensors keep their addresses as a decode step updates them in place, so the graph engine
can capture the step. Each row's position goes on from its own last token (left padding takes none).
"""

from __future__ import annotations

import torch
from transformers import StaticCache

from qbench.backbones.base import Backbone
from qbench.backbones.state import DecodeState


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    """Each token's position in its row of a left-padded batch (padding at 0)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


class StaticCacheBackbone(Backbone):
    """A transformers model over its StaticCache; a prompt's mask is exactly its length (a Mamba layer reads its
    padding from the mask's last columns), a step's the whole cache's (fixed shape, for capture)."""

    def logits(self, embeds: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        positions = None if mask is None else positions_of(mask)
        return self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False).logits

    def new_state(self, batch: int, max_len: int) -> DecodeState:
        device = self.model.device
        return DecodeState(
            cache=StaticCache(config=self.model.config, max_cache_len=max_len),
            mask=torch.ones(batch, max_len, dtype=torch.long, device=device),
            positions=torch.zeros(batch, dtype=torch.long, device=device),
        )

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        length = embeds.shape[1]
        state.mask[:, :length] = mask
        positions = positions_of(mask)
        out = self.model(inputs_embeds=embeds, attention_mask=state.mask[:, :length], position_ids=positions,
                         past_key_values=state.cache, use_cache=True, logits_to_keep=1)
        state.positions.copy_(positions[:, -1] + 1)
        return out.logits[:, -1]

    def step(self, ids: torch.Tensor, state: DecodeState) -> torch.Tensor:
        out = self.model(input_ids=ids[:, None], attention_mask=state.mask, position_ids=state.positions[:, None],
                         past_key_values=state.cache, use_cache=True)
        state.positions.add_(1)
        return out.logits[:, -1]

    def cache_length(self, state: DecodeState) -> int:
        """Columns of the cache written so far (the same for every row: padding takes columns too)."""
        return int(state.cache.get_seq_length())

    def open_chunk(self, mask: torch.Tensor, state: DecodeState) -> int:
        """Mark a chunk's columns in the state's mask (`mask` [B, L]: its padding 0; the columns after it 1, as a
        step expects); the chunk's first column."""
        start, length = self.cache_length(state), mask.shape[1]
        state.mask[:, start : start + length] = mask
        state.mask[:, start + length :] = 1
        return start
