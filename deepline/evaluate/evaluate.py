"""Evaluate a run's model on a split: ``eval.json``, misclassified examples and plots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepline.data.meta import Split
from deepline.evaluate.loading import TrainedRun, load_trained, model_device
from deepline.runs import write_json
from deepline.tasks.base import Evaluator, Task


def evaluate_run(
    run_dir: str | Path,
    split: str | None = None,
    checkpoint: str | None = None,
    data_dir: str | None = None,
    keep_mistakes: int = 32,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate and write ``eval.json``, ``mistakes.npz`` and ``plots/`` in the run folder, on
    ``device`` (default: the run's ``train.device`` when this machine has it)."""
    run = load_trained(run_dir, checkpoint, data_dir, device=device)
    split = split or run.config.eval.split
    result = evaluate_trained(run, split, keep_mistakes)
    write_json(run.run_dir / "eval.json", result)
    return result


@torch.no_grad()
def score(
    task: Task,
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    data: Split,
    batch_size: int,
    keep_mistakes: int = 0,
) -> Evaluator:
    """The task's evaluator, updated with ``model``'s outputs on every example of ``data``
    (``model``: a module, or a function of CPU tensors such as an exported format's runner)."""
    device = model_device(model) if isinstance(model, nn.Module) else torch.device("cpu")
    evaluator = task.evaluator(keep_mistakes=keep_mistakes).to(device)
    for x, y in task.batches(data.x, data.y, batch_size):
        x, y = x.to(device), y.to(device)
        evaluator.update(x, model(x), y)
    return evaluator


def evaluate_trained(run: TrainedRun, split: str, keep_mistakes: int = 32) -> dict[str, Any]:
    evaluator = score(run.task, run.model, run.data.split(split), run.config.eval.batch_size,
                      keep_mistakes)  # fmt: skip
    result: dict[str, Any] = {
        "split": split,
        "checkpoint": run.checkpoint.name,
        "metrics": evaluator.compute(),
        **evaluator.details(),
        **run.task.baselines(run.data, split),
    }
    _write_mistakes(run, evaluator.mistakes)
    plots = run.run_dir / "plots"
    plots.mkdir(exist_ok=True)
    for name, figure in run.task.figures(result).items():
        figure.draw(plots / f"{name}.png")
    return result


def _write_mistakes(run: TrainedRun, mistakes: list[tuple[torch.Tensor, int, int, float]]) -> None:
    """Save misclassified inputs as people see them (images in [0, 1]), for the report."""
    images = run.task.show_inputs(torch.stack([m[0] for m in mistakes])) if mistakes else None
    if images is None:
        (run.run_dir / "mistakes.npz").unlink(missing_ok=True)
        return
    np.savez_compressed(
        run.run_dir / "mistakes.npz",
        images=images.numpy().astype(np.float32),
        true=np.array([m[1] for m in mistakes], dtype=np.int64),
        pred=np.array([m[2] for m in mistakes], dtype=np.int64),
        prob=np.array([m[3] for m in mistakes], dtype=np.float32),
    )
