"""Sequence classification: float sequences (B, T, F) or token ids (B, T) -> (B, K) logits."""

from __future__ import annotations

from typing import Literal

from torch import nn

from deepline.config import ModelConfig
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.classification import ClassificationConfig, ClassificationTask


class SequenceClassificationConfig(ClassificationConfig):
    name: Literal["sequence_classification"] = "sequence_classification"


@TASKS.register(
    "sequence_classification",
    config=SequenceClassificationConfig,
    example={"data": {"name": "text-csv"},
             "model": {"name": "gru", "hidden": 16, "layers": 1, "dropout": 0.0}},
)  # fmt: skip
class SequenceClassification(ClassificationTask):
    """Inputs (B, T, F) floats (the ``sequence`` codec) or (B, T) int64 token ids (``tokens``);
    outputs (B, K) logits."""

    name = "sequence_classification"

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        tokens = self.codec.input_spec()["dtype"] == "int64"
        return build_model(
            model_config,
            num_outputs=self.num_classes,
            output="pooled",
            in_features=None if tokens else self.meta.input_shape[-1],
            vocab_size=self.meta.vocab_size,
            max_len=self.meta.input_shape[0],
        )
