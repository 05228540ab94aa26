"""Tabular classification: rows of named columns (B, F) -> (B, K) logits; for two classes,
optionally decided by group thresholds (``deepline fairness --mitigate``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig, Section
from deepline.data.tabular import CATEGORICAL
from deepline.errors import ConfigError, InputError
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.classification import ClassificationConfig, ClassificationTask


class GroupThresholds(Section):
    """Decisions by group thresholds fitted for a fairness constraint on one sensitive column
    (fitted by ``deepline.trust.mitigation``, applied by ``deepline.tasks.thresholds``); the
    column must be a categorical model input."""

    column: str
    constraint: str
    rule: dict[str, list[dict[str, Any]]]


class TabularClassificationConfig(ClassificationConfig):
    name: Literal["tabular_classification"] = "tabular_classification"
    thresholds: GroupThresholds | None = Field(
        None, description="group thresholds deciding the positive class; set by export from "
        "`deepline fairness --mitigate`"
    )  # fmt: skip


@TASKS.register(
    "tabular_classification",
    config=TabularClassificationConfig,
    example={"data": {"name": "adult"}, "model": {"name": "tabular_mlp", "hidden": [16]}},
)
class TabularClassification(ClassificationTask):
    """Inputs (B, F) rows as the ``tabular`` codec encodes them; outputs (B, K) logits."""

    name = "tabular_classification"
    config: TabularClassificationConfig
    thresholdable: ClassVar[bool] = True

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

    def decide(
        self, logits: np.ndarray, probabilities: np.ndarray, inputs: np.ndarray | None
    ) -> np.ndarray:
        """The most likely class, or with group thresholds the rule's (randomised, seeded by
        each input) decision for the input's group."""
        thresholds = self.config.thresholds
        if thresholds is None:
            return super().decide(logits, probabilities, inputs)
        from deepline.tasks.thresholds import apply_thresholds, input_seeds

        if inputs is None:
            raise InputError("group thresholds decide from the inputs: none were given")
        groups = self.groups_of(np.asarray(inputs), thresholds.column)
        return apply_thresholds(thresholds.rule, probabilities[:, 1], groups, input_seeds(inputs))

    def groups_of(self, inputs: np.ndarray, column: str) -> list[str]:
        """Each encoded row's value of the categorical input ``column`` (``?`` when missing),
        as fairness reports name groups."""
        columns = self.meta.columns
        found = [i for i, c in enumerate(columns) if c["name"] == column
                 and c["kind"] == CATEGORICAL]  # fmt: skip
        if not found:
            raise ConfigError(
                f"group thresholds on '{column}': it is not a categorical input of the model "
                "(train with data.sensitive_input: true)"
            )
        vocabulary = columns[found[0]]["vocabulary"]
        return [vocabulary[int(v) - 1] if v >= 1 else "?" for v in inputs[:, found[0]]]
