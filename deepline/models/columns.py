"""Shared by the table models: which input columns are numeric and which categorical.

A table's model input is float32 (B, F), one value per column in schema order: standardised
numbers, or a category's index (0: unknown) stored as a float (``deepline.data.tabular``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class Columns(nn.Module):
    """Splits a batch of rows into numeric values (B, n_num) and category ids (B, n_cat)."""

    numeric_index: torch.Tensor
    categorical_index: torch.Tensor
    largest_id: torch.Tensor

    def __init__(self, columns: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        if not columns:
            raise ValueError("a table model needs the data's columns (a tabular dataset)")
        kinds = [c["kind"] for c in columns]
        numeric = [i for i, k in enumerate(kinds) if k == "numeric"]
        categorical = [i for i, k in enumerate(kinds) if k != "numeric"]
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long), False)
        self.register_buffer(
            "categorical_index", torch.tensor(categorical, dtype=torch.long), False
        )
        self.cardinalities = [len(columns[i].get("vocabulary", [])) + 1 for i in categorical]
        self.register_buffer("largest_id", torch.tensor(self.cardinalities) - 1, False)

    @property
    def n_numeric(self) -> int:
        return len(self.numeric_index)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        numbers = x.index_select(1, self.numeric_index)
        ids = x.index_select(1, self.categorical_index).round().long()
        outside = (ids < 0) | (ids > self.largest_id)
        return numbers, torch.where(outside, torch.zeros_like(ids), ids)  # outside: unknown


class PeriodicEmbeddings(nn.Module):
    """Numeric columns as learnt periodic features (PLR, Gorishniy et al. 2022, "On
    Embeddings for Numerical Features in Tabular Deep Learning"): for each column j,
    ReLU(Linear_j([sin(2 pi c_j x_j), cos(2 pi c_j x_j)])) with ``frequencies`` learnt
    frequencies c_j drawn from N(0, sigma^2) at the start. (B, n) -> (B, n * dim)."""

    def __init__(self, n: int, frequencies: int, dim: int, sigma: float) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(n, frequencies) * sigma)
        bound = (2 * frequencies) ** -0.5  # nn.Linear's initialisation, one layer per column
        self.weight = nn.Parameter(torch.empty(n, 2 * frequencies, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, dim).uniform_(-bound, bound))

    @property
    def width(self) -> int:
        return int(self.weight.shape[0] * self.weight.shape[2])

    def forward(self, numbers: torch.Tensor) -> torch.Tensor:
        angles = 2 * torch.pi * self.frequencies[None] * numbers[..., None]  # (B, n, k)
        periodic = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (B, n, 2k)
        out = torch.einsum("bnk,nkd->bnd", periodic, self.weight) + self.bias
        return torch.relu(out).flatten(1)
