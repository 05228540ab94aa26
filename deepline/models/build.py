"""Build a registered model from its config and the shapes the data gives."""

from __future__ import annotations

from typing import Any

from torch import nn

from deepline.config import ModelConfig
from deepline.registry import MODELS


def build_model(config: ModelConfig, **shape_args: Any) -> nn.Module:
    """``build_model(LeNetConfig(), in_channels=1, num_classes=10, image_size=(28, 28))``."""
    return MODELS.get(config.name)(**config.kwargs(), **shape_args)
