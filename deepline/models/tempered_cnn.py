"""The CNN of the differential-privacy literature on MNIST: Papernot et al. 2021's
tempered-sigmoid network, also Tramer & Boneh 2021's end-to-end CNN and Opacus' MNIST example.

Small on purpose: DP-SGD adds noise to every parameter's gradient, so fewer parameters (about
26,000 here, against 59,000 for ``small_cnn``) keep more signal per step; tanh keeps
activations, and so gradients, bounded, which suits per-example clipping.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.errors import ConfigError
from deepline.registry import MODELS


class TemperedCNNConfig(ModelConfig):
    name: Literal["tempered_cnn"] = "tempered_cnn"
    channels: tuple[int, int] = Field((16, 32), description="filters of the two convolutions")
    hidden: int = Field(32, ge=1, description="width of the dense layer")
    activation: Literal["tanh", "relu"] = Field("tanh", description="tanh: tempered sigmoid")


@MODELS.register(
    "tempered_cnn",
    config=TemperedCNNConfig,
    example={
        "data": {"name": "digits", "image_size": [16, 16]},
        "model": {"channels": [4, 8], "hidden": 8},
    },
)
class TemperedCNN(nn.Module):
    """conv 8x8 stride 2 -> act -> maxpool 2 (stride 1) -> conv 4x4 stride 2 -> act ->
    maxpool 2 (stride 1) -> dense -> act -> classifier. 28x28 -> 14 -> 13 -> 5 -> 4.

    Input: (B, C, H, W), H and W at least 14. Output: (B, num_classes) logits.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (28, 28),
        channels: tuple[int, int] = (16, 32),
        hidden: int = 32,
        activation: str = "tanh",
    ) -> None:
        super().__init__()

        def act() -> nn.Module:
            return nn.Tanh() if activation == "tanh" else nn.ReLU()

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 8, stride=2, padding=3), act(),
            nn.MaxPool2d(2, 1),
            nn.Conv2d(channels[0], channels[1], 4, stride=2), act(),
            nn.MaxPool2d(2, 1),
        )  # fmt: skip
        h, w = (_out(s) for s in image_size)
        if h < 1 or w < 1:
            raise ConfigError(
                f"model tempered_cnn needs images of at least 14x14, not {image_size[0]}x"
                f"{image_size[1]} (data.image_size)"
            )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[1] * h * w, hidden),
            act(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _out(size: int) -> int:
    """A side's length after the two convolutions and poolings."""
    size = (size + 2 * 3 - 8) // 2 + 1 - 1  # conv 8x8 stride 2 padding 3, then pool 2 stride 1
    return (size - 4) // 2 + 1 - 1  # conv 4x4 stride 2, then pool 2 stride 1
