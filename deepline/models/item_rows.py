"""What the recommenders share: rows ``[user, items...]`` (item 0 pads), and item embeddings
whose padding row stays zero."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

RECOMMENDER_EXAMPLE = {"data": {"name": "movielens-100k"}}


def latest_items(x: torch.Tensor, max_len: int) -> torch.Tensor:
    """The last ``max_len`` items of rows ``[user, items...]``, left-padded to exactly
    ``max_len`` (B, max_len): a row reads the same however much padding it came with."""
    items = x[:, 1:][:, -max_len:]
    return F.pad(items, (max_len - items.size(1), 0))


def init_items(embedding: nn.Embedding, init: Callable[[torch.Tensor], Any]) -> None:
    """Initialise an item embedding with ``init``, its padding row (item 0) kept at zero."""
    init(embedding.weight)
    with torch.no_grad():
        embedding.weight[0].zero_()
