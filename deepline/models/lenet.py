"""A small convolutional net in the spirit of the classic Keras and PyTorch MNIST examples."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.registry import MODELS


class LeNetConfig(ModelConfig):
    name: Literal["lenet"] = "lenet"
    channels: tuple[int, int] = Field((32, 64), description="filters of the two conv stages")
    hidden: int = Field(128, ge=1, description="width of the dense layer")
    kernel_size: Literal[3, 5] = Field(3, description="of both convolutions ('same' padding)")
    dropout: float = Field(0.25, ge=0.0, lt=1.0)
    batch_norm: bool = True


@MODELS.register(
    "lenet",
    config=LeNetConfig,
    example={"data": {"name": "digits"}, "model": {"channels": [4, 8], "hidden": 16}},
)
class LeNet(nn.Module):
    """Two [conv (3x3 or 5x5) -> maxpool2 -> (BN) -> ReLU] stages, a dense layer and a classifier.

    Input: (B, C, H, W) with H, W >= 4. Output: (B, num_classes) logits.
    The pooled map is averaged to at most 7x7, so any image size from 8x8 up works.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (28, 28),
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.25,
        batch_norm: bool = True,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            *_conv_stage(in_channels, c1, batch_norm, kernel_size),
            *_conv_stage(c1, c2, batch_norm, kernel_size),
        )
        # two poolings: (H, W) -> (H/4, W/4); cap at 7x7 so large inputs stay cheap
        h, w = max(min(image_size[0] // 4, 7), 1), max(min(image_size[1] // 4, 7), 1)
        same = (h, w) == (image_size[0] // 4, image_size[1] // 4)
        self.pool: nn.Module = nn.Identity() if same else nn.AdaptiveAvgPool2d((h, w))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c2 * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, c2, H/4, W/4)
        return self.classifier(self.pool(x))  # (B, num_classes)


def _conv_stage(cin: int, cout: int, batch_norm: bool, kernel_size: int) -> list[nn.Module]:
    # pooling first: the same function for ReLU (max commutes with it), 4x less BN/ReLU work
    conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
    norm: nn.Module = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
    return [conv, nn.MaxPool2d(2), norm, nn.ReLU(inplace=True)]
