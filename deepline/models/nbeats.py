"""N-BEATS (Oreshkin et al. 2020): stacked fully connected blocks with backcast and forecast."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.registry import MODELS


class NBeatsConfig(ModelConfig):
    name: Literal["nbeats"] = "nbeats"
    blocks: int = Field(6, ge=1, le=64, description="blocks, each taking the last's residual")
    width: int = Field(256, ge=1, description="units of each fully connected layer")
    layers: int = Field(4, ge=1, le=16, description="fully connected layers per block")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class Block(nn.Module):
    """FC layers -> a backcast of the input it explains and its part of the forecast (the
    paper's generic basis: linear projections)."""

    def __init__(self, inputs: int, outputs: int, width: int, layers: int, dropout: float) -> None:
        super().__init__()
        body: list[nn.Module] = []
        for i in range(layers):
            body += [nn.Linear(inputs if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)]
        self.body = nn.Sequential(*body)
        self.backcast = nn.Linear(width, inputs)
        self.forecast = nn.Linear(width, outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.backcast(h), self.forecast(h)


@MODELS.register(
    "nbeats",
    config=NBeatsConfig,
    example={"data": {"name": "series-csv"}, "task": {"name": "forecasting"},
             "model": {"blocks": 2, "width": 16, "layers": 2}},
)  # fmt: skip
class NBeats(nn.Module):
    """Input: (B, T, F) windows (target first, then covariates). Output: (B, num_outputs), the
    next values of the target.

    Each block reads what the blocks before it left unexplained of the flattened window
    (doubly residual stacking) and adds its part of the forecast.
    """

    def __init__(
        self,
        num_outputs: int,
        in_features: int | None = 1,
        max_len: int = 64,
        blocks: int = 6,
        width: int = 256,
        layers: int = 4,
        dropout: float = 0.0,
        **_unused: Any,
    ) -> None:
        super().__init__()
        inputs = max_len * (in_features or 1)
        self.blocks = nn.ModuleList(
            Block(inputs, num_outputs, width, layers, dropout) for _ in range(blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backcast, forecast = self.blocks[0](x.flatten(1))  # (B, T * F), (B, H)
        residual = x.flatten(1) - backcast
        for block in self.blocks[1:]:
            backcast, part = block(residual)
            residual = residual - backcast
            forecast = forecast + part
        return forecast  # (B, H)
