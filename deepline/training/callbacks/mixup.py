"""Mixup (Zhang et al. 2018, ``train.mixup``): the model learns from convex combinations of
pairs of training examples, ``lam * x_i + (1 - lam) * x_j``, and the loss is the same
combination of the task's losses against ``i``'s target and ``j``'s. ``lam ~ Beta(alpha,
alpha)`` is drawn once per batch and the partners ``j`` are a shuffle of the batch.

The inputs are mixed as the model sees them: normalisation is affine, so mixing normalised
inputs equals normalising mixed ones. Both draws come from the global CPU generator, which
checkpoints keep, so a resumed run mixes exactly as the uninterrupted one. Attacked batches
(``train.adversarial``) are mixed after the attack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from deepline.config import MixupConfig
from deepline.errors import ConfigError
from deepline.tasks.base import Task
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class Mixup(Callback):
    """Installs the mixup objective at ``fit_start``, after checking the task can be mixed."""

    order = 8

    def __init__(self, config: MixupConfig) -> None:
        alpha = torch.tensor(float(config.alpha))
        self.weights = torch.distributions.Beta(alpha, alpha)

    def fit_start(self, trainer: Trainer) -> None:
        task = trainer.task
        if task.codec.unit_space() is None:
            raise ConfigError(
                f"train.mixup cannot be combined with task {task.name}: its "
                f"{task.codec.name} inputs are discrete and cannot be mixed"
            )
        if type(task).step_loss is not Task.step_loss:
            raise ConfigError(
                f"train.mixup cannot be combined with task {task.name}: its training loss is "
                "not one loss of each example against its target, so there is no pair of "
                "losses to mix"
            )
        self.task = task
        trainer.objective = self.objective

    def objective(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        lam = float(self.weights.sample())
        partner = torch.randperm(len(x)).to(x.device)
        outputs = model(torch.lerp(x[partner], x, lam))  # lam * x + (1 - lam) * x[partner]
        return lam * self.task.loss(outputs, y) + (1 - lam) * self.task.loss(outputs, y[partner])
