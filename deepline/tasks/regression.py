"""Regression: features (B, F) -> (B, T) values, MSE on standardised targets, MAE/RMSE/R²."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig, TaskConfig
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.base import Evaluator, Figure, OutputSpec, Task

MAX_POINTS = 2000  # predictions kept in eval.json for the predicted-vs-true plot


class RegressionConfig(TaskConfig):
    name: Literal["regression"] = "regression"
    loss: Literal["mse", "mae", "huber"] = Field(
        "mse", description="on targets standardised with the training split's mean and std"
    )


class TargetScale(nn.Module):
    """``x * std + mean``: the model learns standardised targets and answers in their units
    (the scale is part of the exported graph)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


@TASKS.register(
    "regression",
    config=RegressionConfig,
    example={"data": {"name": "diabetes"}, "model": {"name": "mlp", "hidden": [16]}},
)
class Regression(Task):
    """Inputs (B, F) standardised features; outputs (B, T) values in the targets' units."""

    name = "regression"
    config: RegressionConfig

    @property
    def targets(self) -> list[str]:
        return list(self.meta.target_names) or ["target"]

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        net = build_model(
            model_config,
            in_channels=int(np.prod(self.meta.input_shape)),
            num_classes=len(self.targets),
            image_size=(1, 1),
        )
        mean = self.meta.target_mean or [0.0] * len(self.targets)
        std = self.meta.target_std or [1.0] * len(self.targets)
        return nn.Sequential(net, TargetScale(mean, std))

    def _standardised(self, values: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.meta.target_mean or [0.0], device=values.device)
        std = torch.tensor(self.meta.target_std or [1.0], device=values.device)
        return (values - mean) / std

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pred, true = self._standardised(outputs.float()), self._standardised(targets.float())
        if self.config.loss == "mae":
            return F.l1_loss(pred, true)
        if self.config.loss == "huber":
            return F.huber_loss(pred, true)
        return F.mse_loss(pred, true)

    def evaluator(self, keep_mistakes: int = 0) -> RegressionEvaluator:
        return RegressionEvaluator(self, self.targets)

    def signature(self) -> dict[str, Any]:
        return {
            "inputs": [self.codec.input_spec()],
            "outputs": [{"name": "values", "dtype": "float32", "shape": [-1, len(self.targets)]}],
        }

    def outputs(self) -> list[OutputSpec]:
        return [OutputSpec("values", "FP32", (-1, len(self.targets)))]

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        return {"values": np.asarray(raw, dtype=np.float32).reshape(len(raw), -1)}

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """Each example's predicted value of every target."""
        return [
            [{"target": name, "value": float(v)} for name, v in zip(self.targets, row)]
            for row in named["values"]
        ]

    def answer_form(self) -> dict[str, Any]:
        return {"type": "values", "targets": self.targets}

    def answer_cells(self, answer: Any) -> list[str]:
        return [f"{a['target']} {a['value']:.4g}" for a in answer]

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        points = evaluation.get("predictions")
        if not points:
            return {}
        return {
            "predicted_vs_true": Figure(
                "Predicted against true",
                f"Each point is a {evaluation.get('split', 'test')} example; on the diagonal "
                "the prediction is exact.",
                lambda p: plot_predicted_vs_true(
                    np.asarray(points["true"]),
                    np.asarray(points["predicted"]),
                    points["targets"],
                    p,
                ),
            )
        }


class RegressionEvaluator(Evaluator):
    """MSE, RMSE, MAE and R² (averaged over targets) with torchmetrics; the loss as trained."""

    def __init__(self, task: Regression, targets: list[str]) -> None:
        super().__init__()
        import torchmetrics
        from torchmetrics import regression as tmr

        t = len(targets)
        self.task, self.targets = task, targets
        self.metrics = torchmetrics.MetricCollection(
            {
                "mse": tmr.MeanSquaredError(num_outputs=t),
                "mae": tmr.MeanAbsoluteError(num_outputs=t),
                "r2": tmr.R2Score(multioutput="uniform_average"),
            }
        )
        self.mean_loss = torchmetrics.MeanMetric()
        self.kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.count = 0

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        pred, true = outputs.float().reshape(len(outputs), -1), targets.float()
        true = true.reshape(len(true), -1)
        self.mean_loss.update(self.task.loss(pred, true), weight=len(true))
        single = len(self.targets) == 1
        self.metrics.update(pred[:, 0] if single else pred, true[:, 0] if single else true)
        if self.count < MAX_POINTS:
            self.kept.append((true[: MAX_POINTS - self.count], pred[: MAX_POINTS - self.count]))
        self.count += len(true)

    def compute(self) -> dict[str, float]:
        scores = {name: float(v.float().mean()) for name, v in self.metrics.compute().items()}
        return {"loss": float(self.mean_loss.compute()), **scores, "rmse": scores["mse"] ** 0.5}

    def details(self) -> dict[str, Any]:
        true = torch.cat([t for t, _ in self.kept]) if self.kept else torch.zeros(0, 1)
        pred = torch.cat([p for _, p in self.kept]) if self.kept else torch.zeros(0, 1)
        return {
            "n": self.count,
            "targets": self.targets,
            "predictions": {"targets": self.targets, "true": true.tolist(),
                            "predicted": pred.tolist()},
        }  # fmt: skip


def plot_predicted_vs_true(
    true: np.ndarray, predicted: np.ndarray, targets: list[str], path: Path
) -> Path:
    """One scatter per target of predicted against true values, with the diagonal of exact
    predictions and the R² of the points shown."""
    from matplotlib.figure import Figure as MplFigure

    from deepline import plots

    true, predicted = np.asarray(true, dtype=float), np.asarray(predicted, dtype=float)
    true, predicted = true.reshape(len(true), -1), predicted.reshape(len(predicted), -1)
    n = max(1, true.shape[1])
    fig = MplFigure(figsize=(4.2 * n, 4.0), dpi=plots.DPI)
    for i in range(true.shape[1]):
        ax = fig.add_subplot(1, n, i + 1)
        t, p = true[:, i], predicted[:, i]
        ax.scatter(t, p, s=12, alpha=0.6, edgecolors="none")
        low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([low, high], [low, high], color="#888888", linewidth=1, linestyle="--")
        residual = float(((t - p) ** 2).sum())
        spread = float(((t - t.mean()) ** 2).sum()) or 1.0
        name = plots.plain_text(targets[i]) if i < len(targets) else f"target {i}"
        ax.set_title(f"{name} (R² {1 - residual / spread:.3f}, n = {len(t)})")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return plots.save_figure(fig, path)
