"""Classification tasks: cross-entropy, a torchmetrics collection, class-name answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepline.tasks.base import Evaluator, Task


class ClassificationTask(Task):
    """Outputs (B, K) logits over ``meta.classes``; subclasses say how inputs look."""

    @property
    def num_classes(self) -> int:
        return len(self.meta.classes)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=self.config.label_smoothing)

    def evaluator(self, keep_mistakes: int = 0) -> ClassificationEvaluator:
        return ClassificationEvaluator(self, keep_mistakes)

    def answers(self, outputs: torch.Tensor, top_k: int | None = None) -> list[list[dict]]:
        k = min(top_k or self.config.top_k, self.num_classes)
        probs = outputs.float().softmax(-1)
        top = probs.topk(k, dim=-1)
        return [
            [
                {"class": self.meta.classes[int(i)], "index": int(i), "probability": float(p)}
                for p, i in zip(values, indices)
            ]
            for values, indices in zip(top.values, top.indices)
        ]

    def monitor_default(self) -> tuple[str, str]:
        return "val/accuracy", "max"

    def as_images(self, x: torch.Tensor) -> torch.Tensor | None:
        """Inputs (N, ...) as images (N, C, H, W) in [0, 1] to show people, or None.

        Images and float sequences (a (T, F) sequence shows as a T x F picture) are
        un-normalised; token ids have no picture.
        """
        if not x.is_floating_point() or x.ndim not in (3, 4):
            return None
        images = x[:, None] if x.ndim == 3 else x
        mean = torch.tensor(self.meta.mean or [0.0]).reshape(-1, 1, 1)
        std = torch.tensor(self.meta.std or [1.0]).reshape(-1, 1, 1)
        return (images * std + mean).clamp(0, 1)


class ClassificationEvaluator(Evaluator):
    """Accuracy, macro precision/recall/F1, AUROC, per-class scores and the confusion matrix."""

    def __init__(self, task: ClassificationTask, keep_mistakes: int = 0) -> None:
        import torchmetrics  # a heavy import, needed only once something is evaluated
        from torchmetrics import classification as tmc

        k = task.num_classes
        self.task = task
        self.metrics = torchmetrics.MetricCollection(
            {
                "accuracy": tmc.MulticlassAccuracy(k, average="micro"),
                "precision_macro": tmc.MulticlassPrecision(k, average="macro"),
                "recall_macro": tmc.MulticlassRecall(k, average="macro"),
                "f1_macro": tmc.MulticlassF1Score(k, average="macro"),
                "auroc_macro": tmc.MulticlassAUROC(k, average="macro"),
            }
        )
        self.per_class = torchmetrics.MetricCollection(
            {
                "precision": tmc.MulticlassPrecision(k, average=None),
                "recall": tmc.MulticlassRecall(k, average=None),
                "f1": tmc.MulticlassF1Score(k, average=None),
            }
        )
        self.confusion = tmc.MulticlassConfusionMatrix(k)
        self.mean_loss = torchmetrics.MeanMetric()  # a metric, so processes reduce it too
        self.count = 0
        self.keep_mistakes = keep_mistakes
        self.mistakes: list[tuple[torch.Tensor, int, int, float]] = []
        self.predictions: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        outputs = outputs.float()
        probs = outputs.softmax(-1)
        self.mean_loss.update(F.cross_entropy(outputs, targets, reduction="none"))
        self.count += len(targets)
        self.metrics.update(probs, targets)
        self.per_class.update(probs, targets)
        self.confusion.update(probs, targets)
        self.predictions.append(probs)
        if len(self.mistakes) < self.keep_mistakes:
            confidence, pred = probs.max(-1)
            for i in torch.nonzero(pred != targets).flatten()[: self.keep_mistakes]:
                self.mistakes.append((x[i], int(targets[i]), int(pred[i]), float(confidence[i])))

    def compute(self) -> dict[str, float]:
        scores = {name: float(v) for name, v in self.metrics.compute().items()}
        return {"loss": float(self.mean_loss.compute()), **scores}

    def details(self) -> dict[str, Any]:
        per_class = {name: v.tolist() for name, v in self.per_class.compute().items()}
        cm = self.confusion.compute()
        per_class["support"] = cm.sum(1).tolist()
        return {
            "n": self.count,
            "classes": list(self.task.meta.classes),
            "per_class": per_class,
            "confusion_matrix": cm.tolist(),
        }

    def probabilities(self) -> np.ndarray:
        return torch.cat(self.predictions).numpy() if self.predictions else np.zeros((0, 0))
