"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018).

Item embeddings plus learned positions, causal pre-LayerNorm transformer blocks (ours, from
``attention.py``), and scores as dot products with the same item embeddings.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deepline.models.attention import Block
from deepline.models.item_rows import RECOMMENDER_EXAMPLE, init_items, latest_items
from deepline.models.transformer import BlocksConfig
from deepline.registry import MODELS


class SASRecConfig(BlocksConfig):
    name: Literal["sasrec"] = "sasrec"
    d_model: int = Field(64, ge=1, description="width of item and position embeddings")
    heads: int = Field(2, ge=1, description="attention heads (must divide d_model)")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)


@MODELS.register("sasrec", config=SASRecConfig, example=RECOMMENDER_EXAMPLE)
class SASRec(nn.Module):
    """Input: (B, 1 + T) rows ``[user, items...]``, left-padded with 0 (the user is not read);
    the last ``max_len`` items are. Output: (B, num_items) next-item scores after the history,
    or (B, max_len, num_items) after each position with ``every_position=True`` (training)."""

    def __init__(
        self,
        num_items: int,
        max_len: int,
        d_model: int = 64,
        heads: int = 2,
        layers: int = 2,
        ff_mult: int = 4,
        dropout: float = 0.2,
        **_unused: Any,
    ) -> None:
        super().__init__()
        self.max_len, self.scale = max_len, math.sqrt(d_model)
        self.items = nn.Embedding(num_items, d_model, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, heads, ff_mult, dropout, causal=True) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        init_items(self.items, lambda w: nn.init.normal_(w, std=0.02))

    def forward(self, x: torch.Tensor, every_position: bool = False) -> torch.Tensor:
        items = latest_items(x, self.max_len)  # (B, T)
        T = items.size(1)
        keep = (items > 0).unsqueeze(-1).to(self.pos.dtype)  # (B, T, 1): padding stays zero
        # positions count from the right, so the latest item always has the same one
        h = self.drop(self.items(items) * self.scale + self.pos[self.max_len - T :]) * keep
        for block in self.blocks:
            h = block(h) * keep
        h = self.ln_f(h)  # (B, T, d_model)
        if not every_position:
            h = h[:, -1]  # (B, d_model): after the whole history
        return h @ self.items.weight.T  # (B, [T,] num_items)
