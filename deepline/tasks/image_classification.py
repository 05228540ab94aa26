"""Image classification: inputs (B, C, H, W) normalised floats."""

from __future__ import annotations

from typing import Any

from torch import nn

from deepline.config import ModelConfig
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.classification import ClassificationEvaluator, ClassificationTask

__all__ = ["ClassificationEvaluator", "ImageClassification"]


@TASKS.register("image_classification")
class ImageClassification(ClassificationTask):
    """Inputs (B, C, H, W) normalised floats; outputs (B, K) logits over ``meta.classes``."""

    name = "image_classification"

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        c, h, w = self.meta.input_shape
        return build_model(
            model_config, in_channels=c, num_classes=self.num_classes, image_size=(h, w)
        )

    def signature(self) -> dict[str, Any]:
        c, h, w = self.meta.input_shape
        return {
            "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, c, h, w]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, self.num_classes]}],
        }
