"""GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016), as RecBole writes it: item embeddings, a GRU, a projection back to the embedding
width, and scores as dot products with the item embeddings."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.models.item_rows import RECOMMENDER_EXAMPLE, init_items, latest_items
from deepline.registry import MODELS


class GRU4RecConfig(ModelConfig):
    name: Literal["gru4rec"] = "gru4rec"
    embed_dim: int = Field(64, ge=1, description="item embedding size")
    hidden: int = Field(128, ge=1, description="GRU state size")
    layers: int = Field(1, ge=1, description="stacked GRU layers")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="on the item embeddings")


@MODELS.register("gru4rec", config=GRU4RecConfig, example=RECOMMENDER_EXAMPLE)
class GRU4Rec(nn.Module):
    """Input: (B, 1 + T) rows ``[user, items...]``, left-padded with 0 (the user is not read;
    the last ``max_len`` items are). Output: (B, num_items) next-item scores, or (B, max_len,
    num_items) after each position with ``every_position=True``."""

    def __init__(
        self,
        num_items: int,
        max_len: int,
        embed_dim: int = 64,
        hidden: int = 128,
        layers: int = 1,
        dropout: float = 0.3,
        **_unused: Any,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.items = nn.Embedding(num_items, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(embed_dim, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, embed_dim)
        init_items(self.items, nn.init.xavier_normal_)

    def forward(self, x: torch.Tensor, every_position: bool = False) -> torch.Tensor:
        items = latest_items(x, self.max_len)  # (B, max_len)
        h, _ = self.gru(self.drop(self.items(items)))  # (B, T, hidden)
        if not every_position:
            h = h[:, -1]  # after the whole history (padding is on the left)
        return self.out(h) @ self.items.weight.T  # (B, [T,] num_items)
