"""Residual U-Net (Kerfoot et al. 2018, as in MONAI's ``UNet`` with residual units), in 2-D."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.models.unet import check_divisible
from deepline.registry import MODELS


class ResUNetConfig(ModelConfig):
    name: Literal["resunet"] = "resunet"
    channels: list[int] = Field(
        default_factory=lambda: [16, 32, 64, 128, 256],
        min_length=2,
        description="channels per level; each level after the first halves the size",
    )
    residual_units: int = Field(2, ge=1, description="residual units per level")
    norm: Literal["batch", "instance"] = Field("batch", description="normalisation layers")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


@MODELS.register(
    "resunet",
    config=ResUNetConfig,
    example={"data": {"name": "image-masks"}, "model": {"channels": [4, 8, 8]}},
)
class ResUNet(nn.Module):
    """Strided-convolution encoder and transposed-convolution decoder whose levels are
    residual units, joined by skip connections.

    Input: (B, C, H, W), H and W multiples of 2**(levels - 1). Output: (B, num_classes, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (128, 128),
        channels: list[int] | tuple[int, ...] = (16, 32, 64, 128, 256),
        residual_units: int = 2,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet as MonaiUNet

        check_divisible(image_size, 2 ** (len(channels) - 1), "resunet")
        self.net = MonaiUNet(
            spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
            channels=tuple(channels), strides=(2,) * (len(channels) - 1),
            num_res_units=residual_units, norm=norm, dropout=dropout,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
