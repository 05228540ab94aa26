"""Forecasting: the last ``context`` values of a series (and covariates) -> its next ``horizon``.

Inputs (B, T, F) windows in the series' units, target first; outputs (B, H) forecasts in the
same units. Every model is wrapped in :class:`WindowScaled`: it reads each window standardised
by that window's own past and its forecast is scaled back, so no statistic of values after an
origin is ever used and levels the training windows never reached (a trend) are no surprise.

Evaluation is a rolling-origin backtest (:mod:`deepline.data.series`): the model forecasts from
every validation or test origin, and the statistical baselines (:mod:`.forecast_baselines`) are
refitted on the whole history before each origin and scored on the same horizons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from deepline.config import ModelConfig, TaskConfig, TrainConfig
from deepline.data.meta import DataSplits
from deepline.registry import TASKS
from deepline.tasks.base import Evaluator, Figure, OutputSpec, Task
from deepline.tasks.forecast_baselines import BASELINES, forecast_metrics, mase_scale

BaselineName = Literal["seasonal_naive", "ets", "arima"]


class ForecastingConfig(TaskConfig):
    name: Literal["forecasting"] = "forecasting"
    loss: Literal["mae", "mse", "huber"] = Field(
        "mae", description="on values standardised by each window's own past"
    )
    quantiles: list[float] = Field(
        default_factory=list, description="also forecast these quantiles (e.g. [0.1, 0.5, 0.9]) "
        "with the pinball loss: the median is the forecast, the outermost two an interval",
    )  # fmt: skip
    baselines: list[BaselineName] = Field(
        default_factory=lambda: list(get_args(BaselineName)),
        description="statistical forecasters evaluated on the same origins (refitted at each)",
    )

    checkpoint_monitor = ("val/mase", "min")

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, value: list[float]) -> list[float]:
        inside = all(0 < q < 1 for q in value)
        if value and (sorted(set(value)) != value or not inside or len(value) < 2):
            raise ValueError(
                f"quantiles must be at least two increasing values between 0 and 1, got {value}"
            )
        return value


def window_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each window's every feature over its steps, (B, 1, F);
    a constant window gets a standard deviation of 1."""
    mean = x.mean(1, keepdim=True)
    std = x.std(1, keepdim=True, unbiased=False)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


class WindowScaled(nn.Module):
    """``net`` reads each window standardised by its own past; its forecast of the target is
    scaled back to the target's units. Input (B, T, F); output (B, H), or (B, H, Q) with
    ``quantiles`` Q > 0 (``net`` then gives H * Q values)."""

    def __init__(self, net: nn.Module, quantiles: int = 0) -> None:
        super().__init__()
        self.net, self.quantiles = net, quantiles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = window_stats(x)
        z = self.net((x - mean) / std)  # (B, H[ * Q]) in the window's standard units
        if self.quantiles:
            z = z.unflatten(1, (-1, self.quantiles))  # (B, H, Q)
            return z * std[:, :, :1] + mean[:, :, :1]
        return z * std[:, :, 0] + mean[:, :, 0]


@TASKS.register(
    "forecasting",
    config=ForecastingConfig,
    example={"data": {"name": "series-csv"},
             "task": {"baselines": ["seasonal_naive", "ets"], "quantiles": [0.1, 0.5, 0.9]},
             "model": {"name": "gru", "hidden": 8, "layers": 1}},
)  # fmt: skip
class Forecasting(Task):
    """Inputs (B, T, F) windows (target first); outputs (B, H) forecasts in the target's units."""

    name = "forecasting"
    config: ForecastingConfig

    @property
    def horizon(self) -> int:
        return int(self.meta.series["horizon"])

    @property
    def season(self) -> int:
        return int(self.meta.series.get("season", 1))

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        from deepline.models import build_model

        context, features = self.meta.input_shape
        q = len(self.config.quantiles)
        net = build_model(model_config, num_outputs=self.horizon * max(q, 1), output="pooled",
                          in_features=features, vocab_size=None, max_len=context)  # fmt: skip
        return WindowScaled(net, q)

    def point(self, outputs: torch.Tensor) -> torch.Tensor:
        """The forecast (B, H): the outputs, or their quantile nearest the median."""
        if outputs.dim() == 2:
            return outputs
        median = int(np.argmin([abs(q - 0.5) for q in self.config.quantiles]))
        return outputs[..., median]

    def check_training(self, train: TrainConfig) -> None:
        self.refuse_methods(train, {
            "privacy": "the windows of one series overlap: DP-SGD's guarantee per example would "
            "not protect a value, which many windows hold",
            "adversarial": "adversarial training attacks classified examples",
            "method": "semi- and self-supervised methods learn from unlabelled images",
            "distill": "distillation matches a teacher's class scores",
        })  # fmt: skip

    def scaled_loss(self, pred: torch.Tensor, true: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The training loss: forecasts and actuals standardised by the window ``x``'s past."""
        mean, std = window_stats(x.float())
        true = (true.float() - mean[:, :, 0]) / std[:, :, 0]
        if pred.dim() == 3:  # quantiles: the pinball loss of each
            scaled = (pred.float() - mean[:, :, :1]) / std[:, :, :1]
            return pinball(scaled, true, self.config.quantiles)
        pred = (pred.float() - mean[:, :, 0]) / std[:, :, 0]
        if self.config.loss == "mse":
            return F.mse_loss(pred, true)
        if self.config.loss == "huber":
            return F.huber_loss(pred, true)
        return F.l1_loss(pred, true)

    def step_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        return self.scaled_loss(model(x), y, x)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The forecast's absolute error in the target's units (what attacks read)."""
        return F.l1_loss(self.point(outputs).float(), targets.float())

    def monitor_default(self) -> tuple[str, str]:
        return "val/mase", "min"

    # -- evaluation ---------------------------------------------------------------------------

    def evaluator(self, keep_mistakes: int = 0) -> ForecastEvaluator:
        return ForecastEvaluator(self)

    def baselines(self, data: DataSplits, split: str) -> dict[str, Any]:
        """The statistical forecasters' metrics at the split's origins, each refitted on the
        whole history before the origin, and their forecasts."""
        series = self.meta.series
        origins = series["origins"].get(split, [])
        if not origins:
            return {}
        values = np.asarray(series["values"], dtype=np.float64)
        h, context = self.horizon, int(series["context"])
        actuals = np.stack([values[o : o + h] for o in origins])
        scales = [mase_scale(values[o - context : o], self.season) for o in origins]
        metrics, forecasts = {}, {}
        for name in self.config.baselines:
            made = np.stack([BASELINES[name](values[:o], h, self.season) for o in origins])
            metrics[name] = forecast_metrics(made, actuals, scales)
            forecasts[name] = made.tolist()
        return {"baselines": metrics, "baseline_forecasts": forecasts, "origins": origins}

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        forecasts, origins = evaluation.get("forecasts"), evaluation.get("origins")
        if not forecasts or not origins or len(forecasts) != len(origins):
            return {}
        figures = {
            "forecasts": Figure(
                "Forecasts against actuals, per origin",
                "The context the model read (grey), what happened (black), the model's forecast "
                "and the baselines' (dashed), from each backtest origin.",
                lambda p: plot_forecasts(self.meta.series, evaluation, p),
            )
        }
        if evaluation.get("baselines"):
            figures["mase"] = Figure(
                "MASE of each method",
                "Mean absolute scaled error over the backtest's origins (below 1: better than "
                "the one-season-ago forecast within the context).",
                lambda p: plot_mase(evaluation, p),
            )
        return figures

    # -- serving ------------------------------------------------------------------------------

    @property
    def steps(self) -> list[str]:
        return [f"t+{h + 1}" for h in range(self.horizon)]

    def signature(self) -> dict[str, Any]:
        q = self.config.quantiles
        shape = [-1, self.horizon, len(q)] if q else [-1, self.horizon]
        return {
            "inputs": [self.codec.input_spec()],
            "outputs": [{"name": "forecast", "dtype": "float32", "shape": shape}],
        }

    def outputs(self) -> list[OutputSpec]:
        shape = (-1, self.horizon)
        intervals = [OutputSpec("lower", "FP32", shape), OutputSpec("upper", "FP32", shape)]
        point = [OutputSpec("forecast", "FP32", shape)]
        return point + intervals if self.config.quantiles else point

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The forecast; with quantiles, also the outermost two (the interval's bounds)."""
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim == 3:
            forecast = self.point(torch.from_numpy(raw)).numpy()
            return {"forecast": forecast, "lower": raw[..., 0], "upper": raw[..., -1]}
        return {"forecast": raw.reshape(len(raw), -1)}

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """Each history's next values, one per step ahead (with the interval's bounds)."""
        answers = []
        for i, row in enumerate(named["forecast"]):
            steps = [{"target": step, "value": float(v)} for step, v in zip(self.steps, row)]
            if "lower" in named:
                for step, low, high in zip(steps, named["lower"][i], named["upper"][i]):
                    step.update(lower=float(low), upper=float(high))
            answers.append(steps)
        return answers

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        return self.point(torch.from_numpy(np.asarray(raw, np.float32))).numpy()[:, 0]

    def answer_form(self) -> dict[str, Any]:
        return {"type": "values", "targets": self.steps}

    def answer_cells(self, answer: Any) -> list[str]:
        return [f"{a['target']} {a['value']:.4g}" for a in answer]


class ForecastEvaluator(Evaluator):
    """The forecasting metrics of every window, in order, and the loss as trained."""

    def __init__(self, task: Forecasting) -> None:
        super().__init__()
        self.task = task
        self.forecasts: list[np.ndarray] = []
        self.actuals: list[np.ndarray] = []
        self.scales: list[float] = []
        self.losses: list[tuple[float, int]] = []
        self.quantiles: list[np.ndarray] = []  # (B, H, Q) per batch, with task.quantiles

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.losses.append((float(self.task.scaled_loss(outputs, targets, x)), len(x)))
        self.forecasts.append(self.task.point(outputs).float().cpu().numpy())
        if outputs.dim() == 3:
            self.quantiles.append(outputs.float().cpu().numpy())
        self.actuals.append(targets.float().cpu().numpy())
        context = x[:, :, 0].double().cpu().numpy()
        self.scales += [mase_scale(c, self.task.season) for c in context]

    def compute(self) -> dict[str, float]:
        if not self.forecasts:
            return {"loss": float("nan"), "mase": float("nan")}
        loss = sum(v * n for v, n in self.losses) / sum(n for _, n in self.losses)
        actuals = np.concatenate(self.actuals)
        metrics = forecast_metrics(np.concatenate(self.forecasts), actuals, self.scales)
        if self.quantiles:
            metrics.update(interval_metrics(np.concatenate(self.quantiles), actuals,
                                            self.task.config.quantiles))  # fmt: skip
        return {"loss": loss, **metrics}

    def details(self) -> dict[str, Any]:
        forecasts = np.concatenate(self.forecasts) if self.forecasts else np.zeros((0, 0))
        out: dict[str, Any] = {"n": len(forecasts), "forecasts": forecasts.tolist()}
        if self.quantiles:
            made = np.concatenate(self.quantiles)
            out["intervals"] = {"lower": made[..., 0].tolist(), "upper": made[..., -1].tolist()}
        return out


def pinball(predicted: torch.Tensor, true: torch.Tensor, quantiles: list[float]) -> torch.Tensor:
    """Mean pinball (quantile) loss of predictions (B, H, Q) of ``true`` (B, H)."""
    q = torch.tensor(quantiles, device=predicted.device, dtype=predicted.dtype)
    error = true[..., None] - predicted
    return torch.maximum(q * error, (q - 1) * error).mean()


def interval_metrics(
    predicted: np.ndarray, actuals: np.ndarray, quantiles: list[float]
) -> dict[str, float]:
    """The mean pinball loss, and how often the outermost quantiles hold the actual value
    (``coverage``, against ``nominal_coverage``)."""
    loss = pinball(torch.from_numpy(predicted), torch.from_numpy(actuals), quantiles)
    inside = (predicted[..., 0] <= actuals) & (actuals <= predicted[..., -1])
    return {"quantile_loss": float(loss), "coverage": float(inside.mean()),
            "nominal_coverage": quantiles[-1] - quantiles[0]}  # fmt: skip


def plot_forecasts(series: dict[str, Any], evaluation: dict[str, Any], path: Path) -> Path:
    """One panel per origin (at most 6): context, actuals, the model's and baselines' forecasts."""
    from matplotlib.figure import Figure as MplFigure

    from deepline import plots

    values, times = np.asarray(series["values"]), series["times"]
    h, context = int(series["horizon"]), int(series["context"])
    origins = evaluation["origins"][-6:]
    offset = len(evaluation["origins"]) - len(origins)
    cols = min(3, len(origins))
    rows = -(-len(origins) // cols)
    fig = MplFigure(figsize=(4.6 * cols, 3.0 * rows), dpi=plots.DPI)
    for i, origin in enumerate(origins):
        ax = fig.add_subplot(rows, cols, i + 1)
        past, future = np.arange(origin - context, origin), np.arange(origin, origin + h)
        ax.plot(past, values[past], color="#999999", linewidth=1)
        ax.plot(future, values[future], color="black", linewidth=1.5, label="actual")
        ax.plot(future, evaluation["forecasts"][offset + i], color="#4c72b0", linewidth=1.5,
                label="model")  # fmt: skip
        if "intervals" in evaluation:
            band = evaluation["intervals"]
            ax.fill_between(future, band["lower"][offset + i], band["upper"][offset + i],
                            color="#4c72b0", alpha=0.2, label="interval")  # fmt: skip
        for name, made in evaluation.get("baseline_forecasts", {}).items():
            ax.plot(future, made[offset + i], linestyle="--", linewidth=1, label=name)
        ax.set_title(f"origin {times[origin]}", fontsize=9)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return plots.save_figure(fig, path)


def plot_mase(evaluation: dict[str, Any], path: Path) -> Path:
    """A bar per method: the model's MASE and each baseline's."""
    from matplotlib.figure import Figure as MplFigure

    from deepline import plots

    scores = {"model": evaluation["metrics"]["mase"]}
    scores.update({k: v["mase"] for k, v in evaluation["baselines"].items()})
    fig = MplFigure(figsize=(5.0, 3.0), dpi=plots.DPI)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["#4c72b0"] + ["#bbbbbb"] * (len(scores) - 1)
    ax.bar(list(scores), list(scores.values()), color=colors)
    ax.axhline(1.0, color="#888888", linestyle=":", linewidth=1)
    ax.set_ylabel("MASE (lower is better)")
    fig.tight_layout()
    return plots.save_figure(fig, path)
