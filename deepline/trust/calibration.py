"""Calibration: expected and maximum calibration error before and after temperature scaling
(Guo et al. 2017), the temperature fitted on the validation split (``deepline calibrate``).

One scalar ``T`` divides the logits before the softmax: the predicted class never changes,
only how confident the probabilities are. ``calibration.json`` in the run folder records it,
and ``deepline export`` puts it into the bundle, where the Predictor and every protocol apply
it (``bundle.json``'s ``calibration`` says whether it is on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from deepline.errors import ConfigError
from deepline.evaluate.loading import TrainedRun, predict_batches
from deepline.runs import write_json
from deepline.tasks import Task


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature minimising the negative log-likelihood of ``targets`` (L-BFGS on
    log T, so T stays positive)."""
    logits, targets = logits.detach().float(), targets.detach()
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def calibration_scores(task: Task, logits: torch.Tensor, targets: torch.Tensor, t: float) -> dict:
    """ECE, MCE (15 bins), NLL and accuracy of ``softmax(logits / t)``, and its bins."""
    from deepline.tasks.classification import reliability_bins

    evaluator = task.evaluator()
    evaluator.update(logits, logits / t, targets)
    metrics = evaluator.compute()
    bins = reliability_bins(torch.softmax(logits / t, -1), targets)
    return {
        "ece": metrics["ece"],
        "mce": metrics["mce"],
        "nll": metrics["loss"],
        "accuracy": metrics["accuracy"],
        "bins": bins,
    }


def calibrate_run(run: TrainedRun, split: str = "test") -> dict[str, Any]:
    """Fit the temperature on the validation split; scores before and after on ``split``."""
    task = run.task
    if not task.calibratable:
        raise ConfigError(f"the {task.name} task has no class probabilities to calibrate")
    if not len(run.data.val):
        raise ConfigError(
            "calibration fits its temperature on the validation split, and this run has none "
            "(set data.val_fraction)"
        )
    val_logits = predict_batches(run.model, run.data.val.x)
    t = fit_temperature(val_logits, run.data.val.y)
    data = run.data.split(split)
    logits = predict_batches(run.model, data.x)
    before = calibration_scores(task, logits, data.y, 1.0)
    after = calibration_scores(task, logits, data.y, t)
    if before["accuracy"] != after["accuracy"]:  # argmax is invariant to T > 0
        raise AssertionError("temperature scaling changed a predicted class")
    return {
        "temperature": t,
        "fitted_on": "val",
        "n_fit": len(run.data.val),
        "split": split,
        "n": len(data.x),
        "checkpoint": run.checkpoint.name,
        "before": before,
        "after": after,
    }


def write_calibration(run_dir: Path, result: dict[str, Any]) -> Path:
    """``calibration.json`` and ``plots/reliability_calibrated.png`` in the run folder."""
    from deepline import plots

    write_json(run_dir / "calibration.json", result)
    (run_dir / "plots").mkdir(exist_ok=True)
    bins = {
        "before": {**result["before"]["bins"], "ece": result["before"]["ece"]},
        f"after (T = {result['temperature']:.2f})": {
            **result["after"]["bins"],
            "ece": result["after"]["ece"],
        },
    }
    return plots.plot_reliability(bins, run_dir / "plots" / "calibration.png")
