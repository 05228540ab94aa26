"""FT-Transformer (Gorishniy et al. 2021, "Revisiting deep learning models for tabular data"):
every column becomes a token, a [CLS] token joins them, pre-norm Transformer blocks with ReGLU
feed-forward layers mix them, and the [CLS] token answers. Defaults are the paper's; attention
dropout also applies to the attention's output projection (deepline's ``SelfAttention``, which
exports to ONNX with a dynamic batch and lets ``capture_attention`` read the maps)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from deepline.config import ModelConfig
from deepline.models.attention import SelfAttention
from deepline.models.columns import Columns
from deepline.models.tabular_mlp import TABLE_EXAMPLE
from deepline.registry import MODELS


class FTTransformerConfig(ModelConfig):
    name: Literal["ft_transformer"] = "ft_transformer"
    d_token: int = Field(192, ge=8, description="token width (a multiple of heads)")
    blocks: int = Field(3, ge=1, le=24)
    heads: int = Field(8, ge=1)
    attention_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    ffn_factor: float = Field(4 / 3, gt=0.0, description="feed-forward width / d_token")
    ffn_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    residual_dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> FTTransformerConfig:
        if self.d_token % self.heads:
            raise ValueError(f"d_token ({self.d_token}) must be a multiple of heads ({self.heads})")
        return self


class FeatureTokenizer(nn.Module):
    """Numbers -> value * w_j + b_j; categories -> embedding + b_j: (B, n_columns, d)."""

    offsets: torch.Tensor

    def __init__(self, columns: Columns, d: int) -> None:
        super().__init__()
        self.columns = columns
        n_num, cards = columns.n_numeric, columns.cardinalities
        bound = 1 / math.sqrt(d)
        self.weight = nn.Parameter(torch.empty(n_num, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_num + len(cards), d).uniform_(-bound, bound))
        self.embedding = nn.Embedding(max(sum(cards), 1), d)
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        starts = torch.tensor([0, *cards[:-1]], dtype=torch.long).cumsum(0)  # of each column
        self.register_buffer("offsets", starts[: len(cards)], False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numbers, ids = self.columns(x)
        tokens = [numbers[..., None] * self.weight[None]]
        if ids.size(1):
            tokens.append(self.embedding(ids + self.offsets[None]))
        return torch.cat(tokens, dim=1) + self.bias[None]


class Block(nn.Module):
    def __init__(self, d: int, heads: int, config: FTTransformerConfig, first: bool) -> None:
        super().__init__()
        hidden = int(d * config.ffn_factor)
        self.attention_norm = nn.Identity() if first else nn.LayerNorm(d)  # as in the paper
        self.attention = SelfAttention(d, heads, config.attention_dropout)  # exports, captures
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, 2 * hidden)
        self.ffn_out = nn.Linear(hidden, d)
        self.ffn_dropout = nn.Dropout(config.ffn_dropout)
        self.residual_dropout = nn.Dropout(config.residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.residual_dropout(self.attention(self.attention_norm(x)))
        a, b = self.ffn_in(self.ffn_norm(x)).chunk(2, dim=-1)
        h = self.ffn_out(self.ffn_dropout(a * F.relu(b)))  # ReGLU
        return x + self.residual_dropout(h)


@MODELS.register(
    "ft_transformer",
    config=FTTransformerConfig,
    example={**TABLE_EXAMPLE,
             "model": {"name": "ft_transformer", "d_token": 16, "blocks": 1, "heads": 2}},
)  # fmt: skip
class FTTransformer(nn.Module):
    """Input: (B, F) rows as the ``tabular`` codec encodes them. Output: (B, num_classes)."""

    def __init__(self, columns: Sequence[dict[str, Any]], num_classes: int, **options: Any) -> None:
        super().__init__()
        config = FTTransformerConfig(**options)
        d = config.d_token
        self.tokenizer = FeatureTokenizer(Columns(columns), d)
        self.cls = nn.Parameter(torch.empty(1, 1, d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
        self.blocks = nn.ModuleList(
            Block(d, config.heads, config, first=i == 0) for i in range(config.blocks)
        )
        self.head = nn.Sequential(nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer(x)
        h = torch.cat([tokens, self.cls.expand(x.size(0), -1, -1)], dim=1)  # [CLS] last
        for block in self.blocks:
            h = block(h)
        return self.head(h[:, -1])
