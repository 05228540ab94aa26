"""Adversarial training: each training batch's inputs are replaced by attacked ones before the
model learns from them (``train.adversarial``).

The attack runs on the plain model (not DDP's wrapper, so no gradient is all-reduced; not the
compiled one) in its training mode, under the run's autocast, and takes gradients with respect
to the inputs only. Its random start draws from the global generator, which checkpoints keep,
so a resumed run attacks exactly as the uninterrupted one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from deepline.config import AdversarialConfig
from deepline.errors import ConfigError
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class AdversarialExamples(Callback):
    """Attacks every training batch at ``batch_start`` with the configured attack, its
    epsilon ramped up linearly over ``ramp_epochs``; logs ``train/adversarial_eps``."""

    order = 5  # before anything else sees the batch

    def __init__(self, config: AdversarialConfig) -> None:
        from deepline.attacks import AttackSpec, get_attack

        self.config = config
        self.attack = get_attack(config.attack)
        self.spec = AttackSpec(config.eps, config.norm, config.alpha, config.steps,
                               config.random_start, config.noise, config.project)  # fmt: skip

    def fit_start(self, trainer: Trainer) -> None:
        space = trainer.task.codec.unit_space()
        if space is None:
            raise ConfigError(
                f"train.adversarial: the {trainer.task.codec.name} inputs of this task are "
                "discrete and cannot be perturbed by gradient attacks; remove train.adversarial"
            )
        self.space = space

    def batch_start(self, trainer: Trainer) -> None:
        x, *rest = trainer.batch
        if not rest:
            raise ConfigError(
                f"train.adversarial: the {trainer.task.name} task trains without targets, so "
                "there is no loss for an attack to raise; remove train.adversarial"
            )
        spec = self.spec.scaled(self.ramp(trainer))
        space, model = self.space, trainer.model

        def forward(unit: torch.Tensor) -> torch.Tensor:
            return model(trainer.layout(space.from_unit(unit)))

        with trainer.precision.autocast():
            attacked = self.attack.perturb(
                forward, trainer.task.loss, space.to_unit(x), rest[0], spec, space.low, space.high
            )
        trainer.batch = (trainer.layout(space.from_unit(attacked)), *rest)
        trainer.logs["train/adversarial_eps"] = spec.eps

    @torch.enable_grad()
    def eval_end(self, trainer: Trainer) -> None:
        """PGD accuracy on the first ``validate_examples`` validation examples, at the full
        epsilon, as ``val/robust_accuracy`` (Wong et al. 2020 stop fast FGSM training early
        on it: a single-step-trained model can lose its robustness within an epoch)."""
        wanted = self.config.validate_examples
        if not wanted or trainer.val_loader is None:
            return
        from deepline.attacks import AttackSpec, get_attack

        pgd = get_attack("pgd")
        spec = AttackSpec(self.config.eps, self.config.norm, None, self.config.validate_steps, True)
        space, model = self.space, trainer.eval_model
        model.eval()

        def forward(unit: torch.Tensor) -> torch.Tensor:
            return model(trainer.layout(space.from_unit(unit)))

        x_all, y_all = trainer.val_loader.tensors()[:2]  # the loader's position stays as it is
        right = seen = 0
        for start in range(0, min(wanted, len(y_all)), trainer.config.batch_size):
            stop = min(start + trainer.config.batch_size, wanted)
            x, y = x_all[start:stop].to(trainer.device), y_all[start:stop].to(trainer.device)
            attacked = pgd.perturb(forward, trainer.task.loss, space.to_unit(x), y, spec,
                                   space.low, space.high)  # fmt: skip
            with torch.no_grad():
                wrong = trainer.task.wrong(forward(attacked), y)
            if wrong is None:
                return  # answers that are not right or wrong
            right, seen = right + int((~wrong).sum()), seen + len(y)
        model.train()
        trainer.logs["val/robust_accuracy"] = right / max(1, seen)

    def ramp(self, trainer: Trainer) -> float:
        """The share of epsilon in use: from 0 to 1 over ``ramp_epochs`` of training."""
        if not self.config.ramp_epochs:
            return 1.0
        loader = trainer.train_loader
        progress = trainer.epoch + loader.position / max(1, len(loader))
        return min(1.0, progress / self.config.ramp_epochs)
