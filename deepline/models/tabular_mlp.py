"""An MLP for tables: categorical columns through learnt embeddings, numeric ones as they come
or through periodic embeddings (``numeric_embedding: periodic``, the MLP-PLR of Gorishniy et
al. 2022)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.models.columns import Columns, PeriodicEmbeddings
from deepline.models.mlp import dense_layers
from deepline.registry import MODELS

TABLE_EXAMPLE = {"data": {"name": "adult"}, "task": {"name": "tabular_classification"}}


class TabularMLPConfig(ModelConfig):
    name: Literal["tabular_mlp"] = "tabular_mlp"
    hidden: list[int] = Field(default_factory=lambda: [256, 256], description="layer widths")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    embedding_dim: int = Field(
        16, ge=1, le=512, description="largest embedding of a categorical column (smaller "
        "columns get (categories + 1) // 2)",
    )  # fmt: skip
    numeric_embedding: Literal["none", "periodic"] = Field(
        "none", description="numeric columns as they come, or as learnt periodic features"
    )
    frequencies: int = Field(48, ge=1, le=1024, description="periodic: frequencies per column")
    numeric_dim: int = Field(24, ge=1, le=512, description="periodic: width per numeric column")
    sigma: float = Field(
        0.1, gt=0.0, allow_inf_nan=False, description="periodic: spread of the first frequencies"
    )


@MODELS.register(
    "tabular_mlp",
    config=TabularMLPConfig,
    example={**TABLE_EXAMPLE, "model": {"name": "tabular_mlp", "hidden": [16]}},
)
class TabularMLP(nn.Module):
    """[numbers (or their periodic embeddings), category embeddings] -> (Linear -> ReLU ->
    Dropout) x len(hidden) -> Linear.

    Input: (B, F) rows as the ``tabular`` codec encodes them. Output: (B, num_classes) logits.
    """

    def __init__(
        self,
        columns: Sequence[dict[str, Any]],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.1,
        embedding_dim: int = 16,
        numeric_embedding: str = "none",
        frequencies: int = 48,
        numeric_dim: int = 24,
        sigma: float = 0.1,
    ) -> None:
        super().__init__()
        self.columns = Columns(columns)
        n = self.columns.n_numeric
        self.numeric: nn.Module = (
            PeriodicEmbeddings(n, frequencies, numeric_dim, sigma)
            if numeric_embedding == "periodic" and n
            else nn.Identity()
        )
        self.embeddings = nn.ModuleList(
            nn.Embedding(n, min(embedding_dim, (n + 1) // 2)) for n in self.columns.cardinalities
        )
        widths = [int(e.embedding_dim) for e in self.embeddings if isinstance(e, nn.Embedding)]
        numeric_width = self.numeric.width if isinstance(self.numeric, PeriodicEmbeddings) else n
        width = numeric_width + sum(widths)
        self.net = nn.Sequential(*dense_layers(width, hidden, dropout, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numbers, ids = self.columns(x)
        parts = [self.numeric(numbers), *(e(ids[:, i]) for i, e in enumerate(self.embeddings))]
        return self.net(torch.cat(parts, dim=1))
