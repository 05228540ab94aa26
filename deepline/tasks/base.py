"""The task contract: what ties data, model, training, evaluation and export together."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from deepline.config import ModelConfig, TaskConfig
from deepline.data.bundle import DataMeta


class Evaluator(ABC):
    """Accumulates model outputs over batches and turns them into metrics."""

    @abstractmethod
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Scalar metrics, keyed by metric name (no split prefix)."""

    def details(self) -> dict[str, Any]:
        """Everything an evaluation report shows beyond scalars (JSON-able)."""
        return {}


class Task(ABC):
    """Builds the model from data meta, defines the loss, metrics, answers and signature."""

    name: str

    def __init__(self, config: TaskConfig, meta: DataMeta) -> None:
        self.config = config
        self.meta = meta

    @abstractmethod
    def build_model(self, model_config: ModelConfig) -> nn.Module: ...

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def evaluator(self, keep_mistakes: int = 0) -> Evaluator: ...

    @abstractmethod
    def answers(self, outputs: torch.Tensor, top_k: int | None = None) -> list[Any]:
        """Model outputs -> answers a person reads (class names with probabilities, ...)."""

    @abstractmethod
    def signature(self) -> dict[str, Any]:
        """Input and output tensors: names, dtypes and shapes (-1 for dynamic axes)."""

    def batches(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A whole split as (inputs, targets) batches, in order (for evaluation)."""
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]

    def example_inputs(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Up to ``n`` model inputs from a split's ``x`` (export checks run on these)."""
        return x[:n]

    def monitor_default(self) -> tuple[str, str]:
        """The validation metric that picks the best checkpoint, and 'min' or 'max'."""
        return "val/loss", "min"
