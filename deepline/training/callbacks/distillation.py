"""Knowledge distillation (``train.distill``; Hinton et al. 2015): the student learns the
teacher's softened outputs as well as the labels.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           + (1 - alpha) * task loss(student, labels)

The T^2 keeps the soft targets' gradients at the scale of the hard ones as T grows. The
teacher is another run's best weights, in inference mode on the training device, fed the
same (augmented) batch as the student; it must answer the same classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from deepline.config import DistillConfig, load_config
from deepline.data.meta import DataMeta
from deepline.errors import ConfigError
from deepline.tasks import build_task
from deepline.training.checkpoint import find_checkpoint, load_checkpoint, weights
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


def load_teacher(run_dir: str | Path) -> tuple[nn.Module, list[str]]:
    """A run's model with its best weights, in eval mode, and the classes it answers."""
    folder = Path(run_dir)
    if not (folder / "config.yaml").is_file() or not (folder / "data.json").is_file():
        raise ConfigError(f"train.distill.teacher={str(run_dir)!r} is not a run folder")
    config = load_config(folder / "config.yaml")
    meta = DataMeta.from_dict(json.loads((folder / "data.json").read_text()))
    model = build_task(config.task, meta).build_model(config.model)
    path = find_checkpoint(folder / "checkpoints", "best", config.train.checkpoint.mode)
    tensors, _ = load_checkpoint(path)
    model.load_state_dict(weights(tensors))
    return model.eval().requires_grad_(False), list(meta.classes)


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch."""
    t = temperature
    soft = F.log_softmax(teacher.float() / t, dim=-1)
    return F.kl_div(F.log_softmax(student.float() / t, dim=-1), soft, reduction="batchmean",
                    log_target=True) * t * t  # fmt: skip


class Distillation(Callback):
    """Loads the teacher at ``fit_start`` and installs the distillation objective."""

    order = 8

    def __init__(self, config: DistillConfig) -> None:
        self.config = config

    def fit_start(self, trainer: Trainer) -> None:
        teacher, classes = load_teacher(self.config.teacher)
        student_classes = list(trainer.task.meta.classes)
        if classes != student_classes:
            raise ConfigError(
                f"train.distill.teacher answers classes {classes[:10]}, this run "
                f"{student_classes[:10]}: a teacher must answer the same classes"
            )
        self.teacher = teacher.to(trainer.device, memory_format=trainer.memory_format)  # type: ignore[call-overload]
        self.task = trainer.task
        trainer.objective = self.objective

    def objective(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        student = model(x)
        with torch.no_grad():
            teacher = self.teacher(x)
        soft = distillation_loss(student, teacher, self.config.temperature)
        alpha = self.config.alpha
        return alpha * soft + (1.0 - alpha) * self.task.loss(student, y)
