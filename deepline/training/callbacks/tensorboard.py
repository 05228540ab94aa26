"""TensorBoard: losses, metrics, learning rate, a grid of mistakes, and the hyper-parameters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class TensorBoard(Callback):
    order = 20
    main_only = True

    def __init__(self, log_dir: Path, hparams: dict[str, Any], every_steps: int = 50) -> None:
        self.log_dir = log_dir
        self.hparams = hparams
        self.every_steps = every_steps
        self.writer: Any = None

    def fit_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter  # import cost only when used

        # purge_step drops events after a resumed checkpoint, so curves do not fork
        self.writer = SummaryWriter(str(self.log_dir), purge_step=trainer.step or None)

    def step_end(self, trainer: Trainer) -> None:
        if trainer.step % self.every_steps == 0 and "train/loss" in trainer.logs:
            # the loss and what training measures at this step (pseudo-labels, episodes, ...)
            for key, value in trainer.logs.items():
                if key.startswith("train/") and key != "train/loss_epoch":
                    self.writer.add_scalar(key, value, trainer.step)
            self.writer.add_scalar("lr", trainer.lr, trainer.step)

    def epoch_end(self, trainer: Trainer) -> None:
        for key, value in trainer.logs.items():
            if key.startswith("val/") or key == "train/loss_epoch":
                self.writer.add_scalar(key, value, trainer.step)
        mistakes = trainer.last_evaluator.mistakes if trainer.last_evaluator else []
        inputs = torch.stack([m[0] for m in mistakes]) if mistakes else None
        images = trainer.task.show_inputs(inputs) if inputs is not None else None
        if images is not None:
            self.writer.add_images("val/mistakes", images, trainer.step)
            classes = trainer.task.meta.classes
            captions = ", ".join(f"{classes[t]}→{classes[p]}" for _, t, p, _ in mistakes)
            self.writer.add_text("val/mistakes", captions, trainer.step)
        self.writer.flush()

    def fit_end(self, trainer: Trainer) -> None:
        final = {f"hparam/{k}": v for k, v in trainer.logs.items() if k.startswith("val/")}
        self.writer.add_hparams(self.hparams, final, run_name=".")
        self.writer.close()
