"""Classification: cross-entropy, a torchmetrics collection, class names with probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from deepline.config import TaskConfig
from deepline.tasks.base import Evaluator, Figure, OutputSpec, Task

CALIBRATION_BINS = 15  # as Guo et al. 2017 and torchmetrics' default practice


class ClassificationConfig(TaskConfig):
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    top_k: int = Field(3, ge=1, description="classes shown per answer")
    temperature: float = Field(
        1.0, gt=0.0, description="probabilities are softmax(logits / temperature); fitted on "
        "the validation split by `deepline calibrate` and applied in exported bundles"
    )  # fmt: skip


class ClassificationTask(Task):
    """Outputs (B, K) logits over ``meta.classes``; subclasses say how the model is built."""

    config: ClassificationConfig
    calibratable = True

    @property
    def num_classes(self) -> int:
        return len(self.meta.classes)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=self.config.label_smoothing)

    def example_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets, reduction="none")

    def wrong(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(-1) != targets

    def evaluator(self, keep_mistakes: int = 0) -> ClassificationEvaluator:
        return ClassificationEvaluator(self.num_classes, self.meta.classes, keep_mistakes)

    def monitor_default(self) -> tuple[str, str]:
        return "val/accuracy", "max"

    def signature(self) -> dict[str, Any]:
        return {
            "inputs": [self.codec.input_spec()],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, self.num_classes]}],
        }

    def outputs(self) -> list[OutputSpec]:
        k, classes = self.num_classes, tuple(self.meta.classes)
        return [
            OutputSpec("logits", "FP32", (-1, k), classes),
            OutputSpec("probabilities", "FP32", (-1, k), classes),
            OutputSpec("label", "BYTES", (-1,)),
        ]

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Logits, their softmax at the task's temperature, and the decided class's name (an
        object array of str)."""
        logits = np.asarray(raw, dtype=np.float32)
        scaled = logits / np.float32(self.config.temperature)
        shifted = np.exp(scaled - scaled.max(-1, keepdims=True))
        probabilities = (shifted / shifted.sum(-1, keepdims=True)).astype(np.float32)
        classes = np.asarray(self.meta.classes, dtype=object)
        return {
            "logits": logits,
            "probabilities": probabilities,
            "label": classes[self.decide(logits, probabilities, inputs)],
        }

    def decide(
        self, logits: np.ndarray, probabilities: np.ndarray, inputs: np.ndarray | None
    ) -> np.ndarray:
        """The class index decided for each example: the most likely one."""
        return logits.argmax(-1)

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """The ``top_k`` classes of each example: class, index and probability; the decided
        class (``label``) first, then by probability."""
        probabilities = named["probabilities"]
        index = {c: i for i, c in enumerate(self.meta.classes)}
        k = min(top_k or self.config.top_k, self.num_classes)
        answers = []
        for row, label in zip(probabilities, named["label"]):
            decided = index[label]
            order = [decided, *(i for i in np.argsort(-row, kind="stable") if i != decided)]
            answers.append(
                [
                    {"class": self.meta.classes[i], "index": int(i), "probability": float(row[i])}
                    for i in order[:k]
                ]
            )
        return answers

    def answer_form(self) -> dict[str, Any]:
        return {"type": "ranking", "classes": len(self.meta.classes)}

    def answer_cells(self, answer: Any) -> list[str]:
        return [f"{a['class']} ({a['probability']:.1%})" for a in answer]

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw).argmax(-1)  # the predicted class

    def drift_categories(self) -> int:
        return self.num_classes

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        from deepline import plots

        classes = [str(c) for c in evaluation.get("classes") or self.meta.classes]
        figures = {}
        per_class, cm = evaluation.get("per_class"), evaluation.get("confusion_matrix")
        if per_class and classes:
            figures["per_class"] = Figure(
                "Per-class scores", "Precision, recall and F1 of each class.",
                lambda p: plots.plot_per_class(per_class, classes, p),
            )  # fmt: skip
        reliability = evaluation.get("reliability")
        if reliability:
            figures["reliability"] = Figure(
                "Reliability",
                "Accuracy against confidence in 15 bins; the red part is the gap to perfect "
                "calibration (the diagonal). ECE: the count-weighted mean gap.",
                lambda p: plots.plot_reliability({evaluation.get("split", ""): reliability}, p),
            )
        if cm and classes:
            figures["confusion_matrix"] = Figure(
                "Confusion matrix",
                "Rows: true class; columns: predicted. Colour: fraction of the row; numbers: "
                "counts.",
                lambda p: plots.plot_confusion_matrix(np.asarray(cm), classes, p),
            )
        return figures


class ClassificationEvaluator(Evaluator):
    """Accuracy, macro precision/recall/F1, AUROC, per-class scores and the confusion matrix."""

    def __init__(self, num_classes: int, classes: list[str], keep_mistakes: int = 0) -> None:
        super().__init__()
        import torchmetrics  # a heavy import, needed only once something is evaluated
        from torchmetrics import classification as tmc

        k = num_classes
        self.classes = list(classes)
        self.metrics = torchmetrics.MetricCollection(
            {
                "accuracy": tmc.MulticlassAccuracy(k, average="micro"),
                "precision_macro": tmc.MulticlassPrecision(k, average="macro"),
                "recall_macro": tmc.MulticlassRecall(k, average="macro"),
                "f1_macro": tmc.MulticlassF1Score(k, average="macro"),
                "auroc_macro": tmc.MulticlassAUROC(k, average="macro"),
                "ece": tmc.MulticlassCalibrationError(k, n_bins=CALIBRATION_BINS, norm="l1"),
                "mce": tmc.MulticlassCalibrationError(k, n_bins=CALIBRATION_BINS, norm="max"),
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
        self.predictions: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

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
        self.targets.append(targets)
        if len(self.mistakes) < self.keep_mistakes:
            confidence, pred = probs.max(-1)
            for i in torch.nonzero(pred != targets).flatten()[: self.keep_mistakes]:
                self.mistakes.append(
                    (x[i].cpu(), int(targets[i]), int(pred[i]), float(confidence[i]))
                )

    def compute(self) -> dict[str, float]:
        scores = {name: float(v) for name, v in self.metrics.compute().items()}
        return {"loss": float(self.mean_loss.compute()), **scores}

    def details(self) -> dict[str, Any]:
        per_class = {name: v.tolist() for name, v in self.per_class.compute().items()}
        cm = self.confusion.compute()
        per_class["support"] = cm.sum(1).tolist()
        details = {
            "n": self.count,
            "classes": self.classes,
            "per_class": per_class,
            "confusion_matrix": cm.tolist(),
        }
        if self.predictions:
            probs, targets = torch.cat(self.predictions), torch.cat(self.targets)
            details["reliability"] = reliability_bins(probs, targets)
        return details

    def probabilities(self) -> np.ndarray:
        return torch.cat(self.predictions).cpu().numpy() if self.predictions else np.zeros((0, 0))


def reliability_bins(
    probs: torch.Tensor, targets: torch.Tensor, bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """Per confidence bin of equal width: mean confidence, accuracy and count, and the ECE
    they give (the count-weighted mean |accuracy - confidence|)."""
    confidence, predicted = probs.float().max(-1)
    correct = (predicted == targets).float()
    index = (confidence * bins).long().clamp(max=bins - 1)
    count = torch.zeros(bins, device=probs.device).index_add_(0, index, torch.ones_like(correct))
    conf_sum = torch.zeros(bins, device=probs.device).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins, device=probs.device).index_add_(0, index, correct)
    shown = count.clamp_min(1)
    gap = (acc_sum - conf_sum).abs().sum() / count.sum().clamp_min(1)
    return {
        "confidence": (conf_sum / shown).tolist(),
        "accuracy": (acc_sum / shown).tolist(),
        "count": count.long().tolist(),
        "ece": float(gap),
    }
