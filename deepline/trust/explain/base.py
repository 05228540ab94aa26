"""The explainer contract: attributions of a model's score for a target, per input element."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from deepline.errors import ConfigError
from deepline.tasks import Task

# the small experiment a method's contract test explains (tests/contracts/test_explainers.py)
IMAGE_EXAMPLE = {"data": {"name": "digits"},
                 "model": {"name": "lenet", "channels": [4, 8], "hidden": 16}}  # fmt: skip


@dataclass
class Attribution:
    """How much each input element (a pixel and channel, a sequence value, a token) counts for
    the target's score: ``values`` shaped like the input (tokens: (N, T)); ``delta`` the
    per-example convergence delta of integrated gradients, else None."""

    values: torch.Tensor
    delta: torch.Tensor | None = None


class Explainer(ABC):
    """One attribution method. ``check`` says (ConfigError) when it does not apply."""

    name: ClassVar[str]

    def check(self, model: nn.Module, task: Task) -> None:  # noqa: B027 (optional hook)
        """Raise ConfigError when this method cannot explain ``model``."""

    def attribute(
        self, model: nn.Module, task: Task, x: torch.Tensor, target: torch.Tensor
    ) -> Attribution:
        """Attributions of the score of class ``target[i]`` for each input ``x[i]``."""
        self.check(model, task)
        with warnings.catch_warnings():  # Captum asks for input gradients itself
            warnings.filterwarnings("ignore", message="Input Tensor .* require gradients")
            return self.compute(model, task, x, target)

    @abstractmethod
    def compute(
        self, model: nn.Module, task: Task, x: torch.Tensor, target: torch.Tensor
    ) -> Attribution:
        """``attribute``'s work, once ``check`` has passed."""


def scores(model: nn.Module, task: Task) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model as a function of (N, K) scores, as the task reads them
    (:meth:`Task.class_scores`: a language model's next token, a mask's classes, ...)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return task.class_scores(model(x))

    return forward


def is_tokens(x: torch.Tensor) -> bool:
    return not x.is_floating_point()


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The embedding table token ids go through first (attributions are taken there)."""
    embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if embedding is None:
        raise ConfigError(f"{type(model).__name__} takes token ids but has no nn.Embedding")
    return embedding


def baseline(task: Task, x: torch.Tensor) -> torch.Tensor:
    """What an input element is replaced with when it is taken away: 0 in the codec's unit
    space (a black pixel), else 0; token 0 for token ids."""
    if is_tokens(x):
        return torch.zeros_like(x)
    space = task.codec.unit_space()
    return space.from_unit(torch.zeros_like(x)) if space is not None else torch.zeros_like(x)
