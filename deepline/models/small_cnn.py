"""A plain CNN of strided convolutions: the network of Wong et al. 2020's MNIST experiments
(two 4x4 convolutions of stride 2 with 16 and 32 filters, a 100-unit layer), the usual model
of adversarial-training papers on MNIST."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.registry import MODELS


class SmallCNNConfig(ModelConfig):
    name: Literal["small_cnn"] = "small_cnn"
    channels: tuple[int, ...] = Field((16, 32), min_length=1, description="filters per conv")
    hidden: int = Field(100, ge=1, description="width of the dense layer")


@MODELS.register(
    "small_cnn",
    config=SmallCNNConfig,
    example={"data": {"name": "digits"}, "model": {"channels": [4, 8], "hidden": 16}},
)
class SmallCNN(nn.Module):
    """[conv4x4 stride 2 -> ReLU] per entry of ``channels``, then a dense layer and a
    classifier. Each convolution halves H and W (rounding up): 28 -> 14 -> 7.

    Input: (B, C, H, W). Output: (B, num_classes) logits.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (28, 28),
        channels: tuple[int, ...] = (16, 32),
        hidden: int = 100,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        h, w, cin = image_size[0], image_size[1], in_channels
        for cout in channels:
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            h, w, cin = h // 2, w // 2, cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
