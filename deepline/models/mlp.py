"""A multi-layer perceptron on flattened inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.registry import MODELS


class MLPConfig(ModelConfig):
    name: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [256, 128], description="layer widths")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


def dense_layers(
    width: int, hidden: Sequence[int], dropout: float, outputs: int
) -> list[nn.Module]:
    """(Linear -> ReLU -> Dropout) per entry of ``hidden``, then a Linear to ``outputs``."""
    layers: list[nn.Module] = []
    for out in hidden:
        layers += [nn.Linear(width, out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = out
    return [*layers, nn.Linear(width, outputs)]


@MODELS.register(
    "mlp", config=MLPConfig, example={"data": {"name": "digits"}, "model": {"hidden": [16]}}
)
class MLP(nn.Module):
    """Linear -> ReLU -> Dropout blocks, then a linear classifier.

    Input: (B, C, H, W) or (B, F) floats. Output: (B, num_classes) logits.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (1, 1),
        hidden: list[int] | tuple[int, ...] = (256, 128),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        width = in_channels * image_size[0] * image_size[1]
        self.net = nn.Sequential(nn.Flatten(), *dense_layers(width, hidden, dropout, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, num_classes)
