"""Sequence classification: float sequences (B, T, F) or token ids (B, T) -> (B, K) logits."""

from __future__ import annotations

from typing import Any

from torch import nn

from deepline.config import ModelConfig
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.classification import ClassificationTask


@TASKS.register("sequence_classification")
class SequenceClassification(ClassificationTask):
    """``meta.kind`` "sequence": inputs (B, T, F) floats; "tokens": (B, T) int64 token ids."""

    name = "sequence_classification"

    @property
    def tokens(self) -> bool:
        return self.meta.kind == "tokens"

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        length = self.meta.input_shape[0]
        features = None if self.tokens else self.meta.input_shape[-1]
        return build_model(
            model_config,
            num_outputs=self.num_classes,
            output="pooled",
            in_features=features,
            vocab_size=self.meta.vocab_size,
            max_len=length,
        )

    def signature(self) -> dict[str, Any]:
        # batch and length are dynamic: a model that cannot take other lengths says so at export
        shape = [-1, -1] if self.tokens else [-1, -1, self.meta.input_shape[-1]]
        dtype = "int64" if self.tokens else "float32"
        return {
            "inputs": [{"name": "input", "dtype": dtype, "shape": shape}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, self.num_classes]}],
        }
