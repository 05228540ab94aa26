"""Semi-supervised training (``train.method``): every labelled batch is joined by ``mu`` times
as many unlabelled images, and the model's confident predictions on them become targets.

FixMatch (Sohn et al. 2020): the prediction on a weakly augmented view (the data's own shift
and flips) is the target of a strongly augmented view (RandAugment and Cutout) when its
confidence reaches ``threshold``. Pseudo-labelling (Lee 2013): the confident prediction is the
target of the same weak view. Labelled and unlabelled images go through the model in one
forward pass (one all-reduce under DDP, one set of batch-norm statistics).

The unlabelled images' true labels never reach a loss: they only measure the targets, logged
as ``train/pseudo_rate`` (the share of unlabelled images confident enough) and
``train/pseudo_accuracy`` (how many of those targets are right).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from deepline.config import SemiSupervisedConfig
from deepline.data.randaugment import RandAugment
from deepline.training.callbacks.unlabelled import Unlabelled, UnlabelledImages

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class SemiSupervised(UnlabelledImages):
    """Installs the semi-supervised objective at ``fit_start``; logs the targets' quality."""

    def __init__(self, config: SemiSupervisedConfig, source: Unlabelled, batch_size: int) -> None:
        strong = RandAugment(config.strong_ops, config.cutout)
        super().__init__(source, batch_size * config.mu, strong)
        self.config = config
        self.stats = torch.zeros(3)  # [confident, confident and right, unlabelled seen]

    def fit_start(self, trainer: Trainer) -> None:
        super().fit_start(trainer)
        self.stats = torch.zeros(3, device=trainer.device)

    def objective(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        trainer = self.trainer
        x, y = batch[0], batch[1]
        unlabelled, hidden, generator = self.draw()
        weak = self.weak_view(unlabelled, generator)
        views = [x, trainer.layout(weak)]
        if self.config.name == "fixmatch":
            views.append(trainer.layout(self.strong_view(weak, generator)))
        outputs = model(torch.cat(views))
        labelled, rest = outputs[: len(x)], outputs[len(x) :].chunk(len(views) - 1)
        probs = trainer.task.class_scores(rest[0].detach().float()).softmax(-1)
        confidence, targets = probs.max(-1)
        confident = (confidence >= self.config.threshold).float()
        learner = rest[-1]  # the strong view (FixMatch), else the weak view itself
        unsupervised = (trainer.task.example_losses(learner, targets) * confident).mean()
        with torch.no_grad():
            right = (targets == hidden).float()
            seen = torch.tensor(float(len(hidden)), device=x.device)
            self.stats += torch.stack([confident.sum(), (confident * right).sum(), seen])
        return trainer.task.loss(labelled, y) + self.config.weight * unsupervised

    def step_end(self, trainer: Trainer) -> None:
        if trainer.step % trainer.config.log_every_steps:
            return
        confident, right, seen = (trainer.to_host(v) for v in self.stats)
        trainer.logs["train/pseudo_rate"] = confident / max(seen, 1.0)
        trainer.logs["train/pseudo_accuracy"] = right / confident if confident else float("nan")
        self.stats.zero_()
