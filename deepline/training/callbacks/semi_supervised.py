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
from deepline.data.loaders import UnlabelledStream
from deepline.data.meta import Split
from deepline.data.randaugment import RandAugment
from deepline.data.transforms import BatchAugment
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class SemiSupervised(Callback):
    """Installs the semi-supervised objective at ``fit_start``; logs the targets' quality."""

    order = 8  # its logs are ready before MetricsLog writes the step's line

    def __init__(
        self,
        config: SemiSupervisedConfig,
        unlabelled: Split,
        batch_size: int,
        weak: BatchAugment,
        mean: list[float],
        std: list[float],
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.config = config
        self.stream = UnlabelledStream(unlabelled.x, unlabelled.y, batch_size * config.mu,
                                       seed + 7919, rank, world_size)  # fmt: skip
        self.weak = weak if weak.active else None
        self.strong = RandAugment(config.strong_ops, config.cutout)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.seed, self.rank = seed, rank
        self.stats = torch.zeros(3)  # [confident, confident and right, unlabelled seen]

    def fit_start(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.stats = torch.zeros(3, device=trainer.device)
        self.mean, self.std = self.mean.to(trainer.device), self.std.to(trainer.device)
        trainer.objective = self.objective

    def views(self, draw: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(weak view, strong view or None, hidden labels) of batch ``draw``'s unlabelled
        images (a pure function of it: a resumed run draws the same)."""
        x, hidden = self.stream.batch(draw)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + draw * 31 + self.rank)
        device = self.trainer.device
        x, hidden = x.to(device), hidden.to(device)
        weak = self.weak(x, generator) if self.weak is not None else x
        if self.config.name != "fixmatch":
            return weak, None, hidden
        unit = (weak * self.std + self.mean).clamp(0.0, 1.0)
        strong = (self.strong(unit, generator) - self.mean) / self.std
        return weak, strong, hidden

    def objective(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        trainer = self.trainer
        x, y = batch[0], batch[1]
        accumulate = trainer.config.accumulate  # each micro-batch its own unlabelled images
        micro = (trainer.train_loader.position - 1) % accumulate
        weak, strong, hidden = self.views(trainer.step * accumulate + micro)
        views = [x, trainer.layout(weak)]
        if strong is not None:
            views.append(trainer.layout(strong))
        outputs = model(torch.cat(views))
        labelled, unlabelled = outputs[: len(x)], outputs[len(x) :].chunk(len(views) - 1)
        probs = trainer.task.class_scores(unlabelled[0].detach().float()).softmax(-1)
        confidence, targets = probs.max(-1)
        confident = (confidence >= self.config.threshold).float()
        learner = unlabelled[-1]  # the strong view (FixMatch), else the weak view itself
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
