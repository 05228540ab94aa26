"""Closed-form recommenders: the most popular items, and item-based nearest neighbours.

They have no trainable parameters: ``fit_closed_form`` counts the training rows once (training
calls it, then only validates).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.models.item_rows import RECOMMENDER_EXAMPLE
from deepline.registry import MODELS


def user_item_matrix(x: torch.Tensor, y: torch.Tensor, num_items: int) -> torch.Tensor:
    """Training rows ``[user, items...]`` (W, 1 + L) with next items (W, L) -> a 0/1 matrix
    (users, num_items) of which items each user interacted with (padding column 0 empty)."""
    users = x[:, 0].long()
    num_users = int(users.max()) + 1 if len(users) else 1
    matrix = torch.zeros(num_users, num_items)
    for items in (x[:, 1:], y):
        rows = users.unsqueeze(1).expand_as(items)
        matrix[rows.reshape(-1), items.reshape(-1).long()] = 1.0
    matrix[:, 0] = 0.0
    return matrix


class PopularityConfig(ModelConfig):
    name: Literal["popularity"] = "popularity"


@MODELS.register("popularity", config=PopularityConfig, example=RECOMMENDER_EXAMPLE)
class Popularity(nn.Module):
    """Scores every item by log(1 + users who interacted with it in training), whoever asks.
    Input: (B, 1 + T) rows. Output: (B, num_items)."""

    counts: torch.Tensor

    def __init__(self, num_items: int, **_unused: Any) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(num_items))

    def fit_closed_form(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.counts.copy_(user_item_matrix(x, y, len(self.counts)).sum(0))

    def forward(self, x: torch.Tensor, every_position: bool = False) -> torch.Tensor:
        scores = self.counts.log1p().expand(x.size(0), -1)
        return scores.unsqueeze(1).expand(-1, x.size(1) - 1, -1) if every_position else scores


class ItemKNNConfig(ModelConfig):
    name: Literal["item_knn"] = "item_knn"
    neighbours: int = Field(100, ge=1, description="most similar items kept per item")
    shrink: float = Field(0.0, ge=0.0, description="added to the cosine's denominator")


@MODELS.register("item_knn", config=ItemKNNConfig, example=RECOMMENDER_EXAMPLE)
class ItemKNN(nn.Module):
    """Scores an item by the summed cosine similarity (over users) to the items of the
    history, each item keeping its ``neighbours`` most similar. Input: (B, 1 + T) rows (the
    whole history is read). Output: (B, num_items)."""

    similarity: torch.Tensor

    def __init__(
        self, num_items: int, neighbours: int = 100, shrink: float = 0.0, **_unused: Any
    ) -> None:
        super().__init__()
        self.neighbours, self.shrink = neighbours, shrink
        self.register_buffer("similarity", torch.zeros(num_items, num_items))

    def fit_closed_form(self, x: torch.Tensor, y: torch.Tensor) -> None:
        matrix = user_item_matrix(x, y, len(self.similarity))
        counts = matrix.sum(0)
        together = matrix.T @ matrix  # (items, items) users who have both
        cosine = together / (counts.sqrt().outer(counts.sqrt()) + self.shrink + 1e-12)
        cosine.fill_diagonal_(0.0)
        k = min(self.neighbours, len(cosine))
        top = cosine.topk(k, dim=1)
        self.similarity.zero_().scatter_(1, top.indices, top.values)

    def forward(self, x: torch.Tensor, every_position: bool = False) -> torch.Tensor:
        seen = torch.zeros(x.size(0), len(self.similarity), device=x.device)
        seen = seen.scatter(1, x[:, 1:], 1.0)
        seen[:, 0] = 0.0
        scores = seen @ self.similarity  # (B, num_items)
        return scores.unsqueeze(1).expand(-1, x.size(1) - 1, -1) if every_position else scores
