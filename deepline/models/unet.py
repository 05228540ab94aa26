"""U-Net (Ronneberger et al. 2015) for segmentation: MONAI's ``BasicUNet``, in 2-D."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from deepline.config import ModelConfig
from deepline.errors import ConfigError
from deepline.registry import MODELS


class UNetConfig(ModelConfig):
    name: Literal["unet"] = "unet"
    features: list[int] = Field(
        default_factory=lambda: [16, 32, 64, 128, 256, 16],
        description="channels of the 5 encoder levels, then of the last decoder level",
    )
    norm: Literal["batch", "instance"] = Field("batch", description="normalisation layers")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("features")
    @classmethod
    def _six(cls, value: list[int]) -> list[int]:
        if len(value) != 6 or min(value) < 1:
            raise ValueError("model.features: six positive channel counts (5 levels + output)")
        return value


@MODELS.register(
    "unet",
    config=UNetConfig,
    example={"data": {"name": "image-masks"}, "model": {"features": [4, 4, 8, 8, 8, 4]}},
)
class UNet(nn.Module):
    """Encoder of 5 levels (4 halvings), decoder with skip connections and transposed
    convolutions, 3x3 conv-norm-LeakyReLU pairs throughout.

    Input: (B, C, H, W), H and W multiples of 16. Output: (B, num_classes, H, W) logits.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (128, 128),
        features: list[int] | tuple[int, ...] = (16, 32, 64, 128, 256, 16),
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        check_divisible(image_size, 16, "unet")
        self.net = BasicUNet(
            spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
            features=tuple(features), norm=(norm, {"affine": True}), dropout=dropout,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def check_divisible(image_size: tuple[int, int], factor: int, model: str) -> None:
    """A ConfigError naming data.image_size when the model cannot halve it often enough."""
    if any(side % factor for side in image_size):
        raise ConfigError(
            f"data.image_size: the {model} model needs sides that are multiples of {factor}, "
            f"got {list(image_size)}"
        )
