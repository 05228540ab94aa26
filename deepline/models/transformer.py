"""A transformer encoder classifier: pre-LayerNorm blocks over tokens or float sequences."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from deepline.config import ModelConfig
from deepline.models.attention import Block
from deepline.registry import MODELS


class BlocksConfig(ModelConfig):
    """What every stack of our transformer blocks is configured by (``name`` set by each)."""

    d_model: int = Field(128, ge=1, description="width of the token representations")
    heads: int = Field(4, ge=1, description="attention heads (must divide d_model)")
    layers: int = Field(2, ge=1, description="transformer blocks")
    ff_mult: int = Field(4, ge=1, description="MLP width = ff_mult * d_model")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> BlocksConfig:
        if self.d_model % self.heads:
            raise ValueError(
                f"d_model must be divisible by heads; got d_model={self.d_model}, "
                f"heads={self.heads}"
            )
        return self


class TransformerConfig(BlocksConfig):
    name: Literal["transformer"] = "transformer"
    positions: Literal["learned", "sinusoidal"] = "learned"
    pooling: Literal["cls", "mean"] = Field("cls", description="a [CLS] token or the mean")


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The fixed encodings of "Attention Is All You Need": (length, dim), sin/cos interleaved."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)[:, : dim // 2]
    return table


@MODELS.register(
    "transformer",
    config=TransformerConfig,
    example={
        "data": {"name": "text-csv"},
        "task": {"name": "sequence_classification"},
        "model": {"d_model": 16, "heads": 2, "layers": 1, "dropout": 0.0},
    },
)
class TransformerClassifier(nn.Module):
    """Embedding + positions, ``layers`` pre-LN blocks, final LayerNorm, pooled linear head.

    Input: (B, T) int64 token ids (``vocab_size`` given) or (B, T, in_features) floats, with
    T <= max_len. Output: (B, num_outputs) logits. The encoder attends in both directions, so it
    gives one prediction per sequence only (``output="pooled"``); no padding mask is applied.
    """

    def __init__(
        self,
        num_outputs: int,
        output: Literal["pooled", "sequence"] = "pooled",
        in_features: int | None = None,
        vocab_size: int | None = None,
        max_len: int = 512,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 2,
        ff_mult: int = 4,
        dropout: float = 0.1,
        positions: Literal["learned", "sinusoidal"] = "learned",
        pooling: Literal["cls", "mean"] = "cls",
        **_unused: Any,
    ) -> None:
        super().__init__()
        if output != "pooled":
            raise ValueError(
                f"transformer gives output='pooled' only (got output={output!r}): its encoder "
                "is not causal; use 'gpt' (or an lstm/gru) for a prediction at every position"
            )
        self.embed = _input_embedding(in_features, vocab_size, d_model)
        self.max_len = max_len
        # which positions' attention the prediction reads (for attention rollout)
        self.attention_readout = "first" if pooling == "cls" else "mean"
        n_pos = max_len + (pooling == "cls")  # the [CLS] token takes position 0
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        self.pos: nn.Parameter | torch.Tensor
        if positions == "learned":
            self.pos = nn.Parameter(torch.randn(n_pos, d_model) * 0.02)
        else:
            self.register_buffer("pos", sinusoidal_positions(n_pos, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, heads, ff_mult, dropout, causal=False) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) > self.max_len:
            raise ValueError(
                f"sequence of length {x.size(1)} is longer than the model's max_len={self.max_len}"
            )
        h = self.embed(x)  # (B, T, d_model)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(x.size(0), -1, -1), h], dim=1)  # (B, 1 + T, d_model)
        h = self.drop(h + self.pos[: h.size(1)])
        for block in self.blocks:
            h = block(h)
        h = self.ln_f(h)
        pooled = h[:, 0] if self.cls is not None else h.mean(dim=1)  # (B, d_model)
        return self.head(pooled)  # (B, num_outputs)


def _input_embedding(in_features: int | None, vocab_size: int | None, dim: int) -> nn.Module:
    """A linear projection of float features, or an embedding table for token ids."""
    if in_features is not None:
        return nn.Linear(in_features, dim)
    if vocab_size is not None:
        return nn.Embedding(vocab_size, dim)
    raise ValueError("give in_features (float sequences) or vocab_size (token ids); got neither")
