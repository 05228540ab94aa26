"""Tabular classification: rows of named columns (B, F) -> (B, K) logits."""

from __future__ import annotations

from typing import Literal

from torch import nn

from deepline.config import ModelConfig
from deepline.errors import ConfigError
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.classification import ClassificationConfig, ClassificationTask


class TabularClassificationConfig(ClassificationConfig):
    name: Literal["tabular_classification"] = "tabular_classification"


@TASKS.register(
    "tabular_classification",
    config=TabularClassificationConfig,
    example={"data": {"name": "adult"}, "model": {"name": "tabular_mlp", "hidden": [16]}},
)
class TabularClassification(ClassificationTask):
    """Inputs (B, F) rows as the ``tabular`` codec encodes them; outputs (B, K) logits."""

    name = "tabular_classification"

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        if not self.meta.columns:
            raise ConfigError(
                f"task tabular_classification needs a table (data.name: adult, table), not "
                f"{self.meta.name}"
            )
        try:
            return build_model(
                model_config, columns=self.meta.columns, num_classes=self.num_classes
            )
        except TypeError:
            raise ConfigError(
                f"model.name: {model_config.name} does not read tables. Allowed for "
                "tabular_classification: tabular_mlp, ft_transformer"
            ) from None
