"""Knowledge distillation (``train.distill``; Hinton et al. 2015): the student learns the
teacher's softened outputs as well as the labels.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           + (1 - alpha) * task loss(student, labels)
           + features * similarity loss(student features, teacher features)

The T^2 keeps the soft targets' gradients at the scale of the hard ones as T grows. The
teacher is another run's best weights (in eval mode on the training device) or an exported
bundle's ``model.onnx`` (run by ONNX Runtime on the CPU), fed the same (augmented) batch as
the student; it must answer the same classes.

Feature matching (``features`` > 0) compares the inputs of the two output layers through
their batch similarity matrices (Tung & Mori 2019, similarity-preserving distillation), so the
widths need not agree and nothing is learned besides the student. With ``cache`` the teacher
answers every training example once, before training, and batches read its answers by index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from deepline.config import DistillConfig, load_config
from deepline.data.meta import DataMeta
from deepline.errors import ConfigError
from deepline.models.parts import output_layer
from deepline.models.shapes import fit_to_weights
from deepline.tasks import build_task
from deepline.training.checkpoint import find_checkpoint, load_checkpoint, weights
from deepline.training.device import Prefetcher
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


Teacher = Callable[[torch.Tensor], torch.Tensor]


def load_teacher(path: str | Path) -> tuple[nn.Module | Teacher, list[str]]:
    """A run's model with its best weights, in eval mode, or a bundle's ONNX model as a
    function of the same inputs; and the classes it answers."""
    folder = Path(path)
    if (folder / "bundle.json").is_file():
        return onnx_teacher(folder)
    if not (folder / "config.yaml").is_file() or not (folder / "data.json").is_file():
        raise ConfigError(
            f"train.distill.teacher={str(path)!r} is neither a run folder nor a bundle"
        )
    config = load_config(folder / "config.yaml")
    meta = DataMeta.from_dict(json.loads((folder / "data.json").read_text()))
    model = build_task(config.task, meta).build_model(config.model)
    path = find_checkpoint(folder / "checkpoints", "best", config.train.checkpoint.mode)
    tensors, _ = load_checkpoint(path)
    state = weights(tensors)
    fit_to_weights(model, state)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False), list(meta.classes)


def onnx_teacher(bundle: Path) -> tuple[Teacher, list[str]]:
    """The bundle's ``model.onnx`` on ONNX Runtime, as a function of torch inputs."""
    import numpy as np
    import onnxruntime as ort

    manifest = json.loads((bundle / "bundle.json").read_text())
    if not (bundle / "model.onnx").is_file():
        raise ConfigError(
            f"train.distill.teacher: bundle {bundle} has no model.onnx (export it with "
            "`deepline export --format onnx`)"
        )
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def forward(x: torch.Tensor) -> torch.Tensor:
        (out, *_) = session.run(None, {name: np.ascontiguousarray(x.detach().cpu().numpy())})
        return torch.from_numpy(out).to(x.device)

    return forward, list(manifest["data"]["classes"])


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch."""
    t = temperature
    soft = F.log_softmax(teacher.float() / t, dim=-1)
    return F.kl_div(F.log_softmax(student.float() / t, dim=-1), soft, reduction="batchmean",
                    log_target=True) * t * t  # fmt: skip


def similarity_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Tung & Mori's loss: ``||G_s - G_t||_F^2 / b^2``, where ``G`` is the batch's (b, b)
    matrix of feature dot products with each row scaled to unit length."""
    b = len(student)
    gram_s = F.normalize(student.flatten(1).float() @ student.flatten(1).float().T, dim=1)
    gram_t = F.normalize(teacher.flatten(1).float() @ teacher.flatten(1).float().T, dim=1)
    return (gram_s - gram_t).pow(2).sum() / (b * b)


class _Features:
    """The last input of a model's output layer (its features), kept by a forward pre-hook."""

    def __init__(self, model: nn.Module) -> None:
        self.value = torch.zeros(0)
        self.handle = output_layer(model).register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.value = inputs[0]


class Distillation(Callback):
    """Loads the teacher at ``fit_start`` and installs the distillation objective."""

    order = 8

    def __init__(self, config: DistillConfig) -> None:
        self.config = config
        self.cached: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def fit_start(self, trainer: Trainer) -> None:
        teacher, classes = load_teacher(self.config.teacher)
        student_classes = list(trainer.task.meta.classes)
        if classes != student_classes:
            raise ConfigError(
                f"train.distill.teacher answers classes {classes[:10]}, this run "
                f"{student_classes[:10]}: a teacher must answer the same classes"
            )
        if isinstance(teacher, nn.Module):
            teacher = teacher.to(trainer.device, memory_format=trainer.memory_format)  # type: ignore[call-overload]
        elif self.config.features:
            raise ConfigError(
                "train.distill.features needs the teacher's features: give the teacher's run "
                "folder, not a bundle (its model.onnx answers only outputs)"
            )
        self.teacher: nn.Module | Teacher = teacher
        self.task = trainer.task
        if self.config.features:
            self.student_features = _Features(trainer.model)
            self.teacher_features = _Features(teacher)  # type: ignore[arg-type]
        self.loader = trainer.train_loader
        if self.config.cache:
            self.cached = self._cache(trainer)
        trainer.objective = self.objective

    def _teach(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The teacher's outputs for ``x`` and, with feature matching, its features."""
        with torch.no_grad():
            outputs = self.teacher(x)
        features = self.teacher_features.value if self.config.features else None
        return outputs, features

    def _cache(self, trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The teacher's answers for every training example, in the loader's order of x."""
        loader = self.loader
        examples = getattr(loader, "x", None)
        if isinstance(loader, Prefetcher):
            raise ConfigError(
                "train.distill.cache needs the training examples kept on the device "
                "(train.data_on_device: true): batches copied one ahead cannot be matched to "
                "their cached rows"
            )
        if examples is None or not hasattr(loader, "last_index"):
            raise ConfigError(
                f"train.distill.cache needs training examples held in memory; the "
                f"{trainer.task.name} task's training batches are made as it trains"
            )
        if trainer.config.adversarial is not None:
            raise ConfigError(
                "train.distill.cache cannot be combined with train.adversarial: the cache "
                "holds the teacher's answers for the clean examples, and the student learns "
                "from attacked ones (remove one)"
            )
        if getattr(loader, "augment", None) is not None:
            raise ConfigError(
                "train.distill.cache cannot be combined with data.augment: the cache holds the "
                "teacher's answers for the examples as stored, and augmentation shows the "
                "student other views (remove one)"
            )
        parts = [self._teach(trainer.layout(x.to(trainer.device))) for x in examples.split(256)]
        outputs = torch.cat([o for o, _ in parts])
        features = torch.cat([f for _, f in parts]) if self.config.features else None  # type: ignore[misc]
        return outputs, features

    def fit_end(self, trainer: Trainer) -> None:
        """The hooks come off: the trained model is left as it was (for evaluation, export)."""
        if self.config.features:
            self.student_features.handle.remove()
            self.teacher_features.handle.remove()

    def objective(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        student = model(x)
        if self.cached is not None:
            index = self.loader.last_index.to(self.cached[0].device)
            teacher = self.cached[0][index]
            teacher_features = None if self.cached[1] is None else self.cached[1][index]
        else:
            teacher, teacher_features = self._teach(x)
        soft = distillation_loss(student, teacher, self.config.temperature)
        alpha = self.config.alpha
        loss = alpha * soft + (1.0 - alpha) * self.task.loss(student, y)
        if teacher_features is not None:
            matched = similarity_loss(self.student_features.value, teacher_features)
            loss = loss + self.config.features * matched
        return loss
