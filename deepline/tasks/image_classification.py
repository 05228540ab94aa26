"""Image classification: inputs (B, C, H, W) normalised floats -> (B, K) logits."""

from __future__ import annotations

from typing import Literal

from torch import nn

from deepline.config import ModelConfig
from deepline.registry import TASKS
from deepline.tasks.base import image_model
from deepline.tasks.classification import ClassificationConfig, ClassificationTask


class ImageClassificationConfig(ClassificationConfig):
    name: Literal["image_classification"] = "image_classification"


@TASKS.register(
    "image_classification",
    config=ImageClassificationConfig,
    example={"data": {"name": "digits"},
             "model": {"name": "lenet", "channels": [4, 8], "hidden": 16}},
)  # fmt: skip
class ImageClassification(ClassificationTask):
    """Inputs (B, C, H, W) normalised floats; outputs (B, K) logits over ``meta.classes``."""

    name = "image_classification"

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        return image_model(model_config, self.meta)
