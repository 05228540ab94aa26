"""Matrix factorisation trained with BPR (Rendle et al., "BPR: Bayesian Personalized Ranking
from Implicit Feedback", UAI 2009): a user's score for an item is the dot product of their
factors."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.models.item_rows import RECOMMENDER_EXAMPLE, init_items
from deepline.registry import MODELS


class BPRMFConfig(ModelConfig):
    name: Literal["bpr_mf"] = "bpr_mf"
    factors: int = Field(64, ge=1, description="latent factors per user and item")


@MODELS.register("bpr_mf", config=BPRMFConfig, example=RECOMMENDER_EXAMPLE)
class BPRMF(nn.Module):
    """Input: (B, 1 + T) rows ``[user, items...]``: the user's factors score the items; an
    anonymous row (user 0) is folded in as the mean factors of its items. Output: (B,
    num_items) scores, the same at every position with ``every_position=True`` (B, T, ...)."""

    def __init__(self, num_items: int, num_users: int, factors: int = 64, **_unused: Any):
        super().__init__()
        self.users = nn.Embedding(num_users + 1, factors)  # index 0: anonymous (unused)
        self.items = nn.Embedding(num_items, factors, padding_idx=0)
        nn.init.normal_(self.users.weight, std=0.1)
        init_items(self.items, lambda w: nn.init.normal_(w, std=0.1))

    def forward(self, x: torch.Tensor, every_position: bool = False) -> torch.Tensor:
        user, items = x[:, 0], x[:, 1:]
        known = (items > 0).sum(1, keepdim=True).clamp_min(1)
        folded = self.items(items).sum(1) / known  # (B, factors): padding embeds to zero
        vector = torch.where((user > 0).unsqueeze(-1), self.users(user), folded)
        scores = vector @ self.items.weight.T  # (B, num_items)
        return scores.unsqueeze(1).expand(-1, items.size(1), -1) if every_position else scores
