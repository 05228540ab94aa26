"""A ResNet with basic blocks, sized for small images (8x8 to 64x64)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.registry import MODELS


class ResNetConfig(ModelConfig):
    name: Literal["resnet"] = "resnet"
    blocks: list[int] = Field(default_factory=lambda: [2, 2, 2], description="blocks per stage")
    width: int = Field(32, ge=4, description="channels of the first stage (doubles per stage)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (projected) shortcut.

    (B, cin, H, W) -> (B, cout, H/s, W/s).
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@MODELS.register(
    "resnet",
    config=ResNetConfig,
    example={"data": {"name": "digits"}, "model": {"blocks": [1, 1], "width": 4}},
)
class ResNet(nn.Module):
    """Stem conv3x3, stages of basic blocks (stride 2 from the second stage), global pooling.

    Input: (B, C, H, W), C in {1, 3}, H and W from 8 to 64 (larger works, at more cost).
    Output: (B, num_classes) logits. Depth = 2 * sum(blocks) + 2 layers.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (32, 32),
        blocks: list[int] | tuple[int, ...] = (2, 2, 2),
        width: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            for j in range(n):
                stride = 2 if (i > 0 and j == 0 and min(image_size) >> i >= 2) else 1
                stages.append(BasicBlock(cin, cout, stride))
                cin = cout
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, width * 2**(stages-1), H', W')
        return self.head(x)  # (B, num_classes)
