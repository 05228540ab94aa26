"""Rebuild a run's data, task and trained model from its folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deepline.config import ExperimentConfig, load_config
from deepline.data import DataSplits
from deepline.errors import ConfigError
from deepline.models.shapes import fit_to_weights
from deepline.runs import check_run_dir
from deepline.tasks import Task, build_task, task_class
from deepline.training.checkpoint import find_checkpoint, load_checkpoint, weights
from deepline.training.device import resolve_device


@dataclass
class TrainedRun:
    run_dir: Path
    config: ExperimentConfig
    data: DataSplits
    task: Task
    model: nn.Module
    checkpoint: Path


def load_trained(
    run_dir: str | Path,
    checkpoint: str | None = None,
    data_dir: str | None = None,
    data: DataSplits | None = None,
    device: str | None = "cpu",
) -> TrainedRun:
    """The run's model, with its ``best`` (default) or ``last`` weights, in eval mode, on
    ``device`` (None: the run's own ``train.device``, else ``auto`` when that is not here).

    ``data``, when given, replaces the data the config would load (a run trained on data it
    was handed, as ``run_training(..., data=...)`` allows).
    """
    run_dir = check_run_dir(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    data = data if data is not None else task_class(cfg.task.name).load_data(cfg.data)
    task = build_task(cfg.task, data.meta)
    model = task.build_model(cfg.model)
    which = checkpoint or cfg.eval.checkpoint
    path = find_checkpoint(run_dir / "checkpoints", which, cfg.train.checkpoint.mode)
    tensors, _ = load_checkpoint(path)
    state = weights(tensors)
    fit_to_weights(model, state)  # a model whose channels were pruned is narrower
    model.load_state_dict(state)
    model.to(run_device(cfg.train.device) if device is None else resolve_device(device))
    model.eval()
    return TrainedRun(run_dir, cfg, data, task, model, path)


def run_device(spec: str) -> torch.device:
    """The device a run trained on, when this machine has it; else the best one here."""
    try:
        return resolve_device(spec)
    except ConfigError:
        return resolve_device("auto")


def model_device(model: nn.Module) -> torch.device:
    """Where a model's tensors are (a model fitted in closed form has only buffers)."""
    return next(iter([*model.parameters(), *model.buffers()])).device


@torch.no_grad()
def predict_batches(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Model outputs for ``x``, computed in batches on the model's device (returned on the
    CPU)."""
    device = model_device(model)
    return torch.cat(
        [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    )
