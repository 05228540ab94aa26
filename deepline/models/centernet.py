"""CenterNet ("Objects as Points", Zhou et al. 2019) on a small ResNet, trained from scratch:
objects are peaks of a per-class heatmap at a quarter of the input's resolution, with their
size and sub-pixel offset regressed at the peak."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.models.resnet import BasicBlock
from deepline.models.unet import check_divisible
from deepline.registry import MODELS

STRIDE = 4  # output cells per input pixel, each axis
PRIOR = 0.1  # initial heatmap probability (the focal-loss prior of Lin et al.)


class CenterNetConfig(ModelConfig):
    name: Literal["centernet"] = "centernet"
    width: int = Field(32, ge=4, description="channels of the first stage (doubling per stage)")
    blocks: list[int] = Field(
        default_factory=lambda: [1, 2, 2, 2], min_length=4, max_length=4,
        description="basic blocks in the stages at strides 2, 4, 8 and 16",
    )  # fmt: skip
    head: int = Field(64, ge=4, description="channels of the upsampling path and the heads")


@MODELS.register(
    "centernet",
    config=CenterNetConfig,
    example={"data": {"name": "voc"}, "model": {"width": 4, "blocks": [1, 1, 1, 1], "head": 8}},
)
class CenterNet(nn.Module):
    """A stem and ResNet stages at strides 2 to 16, a feature pyramid back to stride 4, and
    the heads.

    Input: (B, C, H, W), H and W multiples of 16. Output: (B, K + 4, H/4, W/4): K heatmap
    logits, then the offset (x, y) of each object's centre inside its cell and its size
    (width, height), both in cells.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (256, 256),
        width: int = 32,
        blocks: list[int] | tuple[int, ...] = (1, 2, 2, 2),
        head: int = 64,
    ) -> None:
        super().__init__()
        check_divisible(image_size, 16, "centernet")
        # a 3x3 stem halves the size first: the stages' 1x1 strided shortcuts then never see
        # the raw channels (a 1x1 stride-2 convolution of 3 channels-last channels corrupts
        # memory in its backward pass in torch 2.13 on the CPU)
        self.stem = _conv_bn_relu(in_channels, width, stride=2)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            first = BasicBlock(cin, cout, 1 if i == 0 else 2)
            stages.append(nn.Sequential(first, *(BasicBlock(cout, cout, 1) for _ in range(n - 1))))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(width * 2**i, head, 1) for i in (1, 2, 3))
        self.smooth = nn.ModuleList(_conv_bn_relu(head, head) for _ in range(2))
        self.heatmap = _head(head, num_classes)
        self.regression = _head(head, 4)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - PRIOR) / PRIOR))  # type: ignore[arg-type]

    @property
    def explained_layer(self) -> nn.Module:
        """What Grad-CAM weighs: the heatmap head's convolution (the last convolution overall
        is the box regression's, which has no path to the class scores)."""
        return self.heatmap[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)  # strides 2, 4, 8, 16
        top = self.lateral[2](features[3])  # stride 16
        for level, smooth in ((1, self.smooth[0]), (0, self.smooth[1])):  # to 8, then 4
            lateral = self.lateral[level](features[level + 1])
            top = smooth(lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest"))
        return torch.cat([self.heatmap(top), self.regression(top)], 1)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))  # fmt: skip


def _head(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1)
    )
