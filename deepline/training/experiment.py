"""Assemble an experiment from its config: data -> task -> model -> trainer -> run folder."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from deepline.config import ExperimentConfig, load_config
from deepline.data import DataBundle, load_data
from deepline.data.loaders import BatchLoader
from deepline.data.transforms import BatchAugment
from deepline.runs import environment_info, new_run_dir, write_json
from deepline.tasks import Task, build_task
from deepline.training.callbacks import (
    Checkpointing,
    EarlyStopping,
    MetricsLog,
    ProgressBar,
    TensorBoard,
)
from deepline.training.checkpoint import load_latest
from deepline.training.events import Callback
from deepline.training.loop import Trainer
from deepline.training.seed import seed_everything


@dataclass
class Experiment:
    """Everything built from one config, ready to ``fit``."""

    config: ExperimentConfig
    run_dir: Path
    data: DataBundle
    task: Task
    model: nn.Module
    trainer: Trainer


def build_experiment(
    config: ExperimentConfig,
    run_dir: Path,
    extra_callbacks: list[Callback] | None = None,
    console: Console | None = None,
    data: DataBundle | None = None,
    model: nn.Module | None = None,
) -> Experiment:
    """Seed, load data, build task, model, loaders and trainer with the default callbacks.

    ``data`` and ``model``, when given, replace what the config would load and build.
    """
    cfg = config
    threads = cfg.train.num_threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    seed_everything(cfg.seed, cfg.train.deterministic)
    data = data if data is not None else load_data(cfg.data)
    task = build_task(cfg.task, data.meta)
    torch.manual_seed(cfg.seed)  # model initialisation independent of how data was loaded
    model = model if model is not None else task.build_model(cfg.model)
    fill = [-m / s for m, s in zip(data.meta.mean, data.meta.std)]  # normalised background
    train = BatchLoader(
        data.train.x,
        data.train.y,
        cfg.train.batch_size,
        shuffle=True,
        seed=cfg.seed,
        augment=BatchAugment(cfg.data.augment, fill=fill),
    )
    val = BatchLoader(data.val.x, data.val.y, cfg.eval.batch_size) if len(data.val) else None
    callbacks = default_callbacks(cfg, run_dir, console) + list(extra_callbacks or [])
    trainer = Trainer(model, task, train, val, cfg.train, callbacks)
    return Experiment(cfg, run_dir, data, task, model, trainer)


def default_callbacks(
    cfg: ExperimentConfig, run_dir: Path, console: Console | None = None
) -> list[Callback]:
    t = cfg.train
    callbacks: list[Callback] = [
        MetricsLog(run_dir, t.log_every_steps),
        ProgressBar(console),
        Checkpointing(
            run_dir / "checkpoints",
            t.checkpoint.every_steps,
            t.checkpoint.keep_last,
            t.checkpoint.monitor,
            t.checkpoint.mode,
        ),
    ]
    if t.tensorboard:
        callbacks.append(TensorBoard(run_dir / "tb", hparams_of(cfg), t.log_every_steps))
    if t.early_stopping is not None:
        es = t.early_stopping
        callbacks.append(EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta))
    return callbacks


def hparams_of(cfg: ExperimentConfig) -> dict[str, float | int | str | bool]:
    """The flat hyper-parameters TensorBoard's HPARAMS tab shows."""
    t = cfg.train
    return {
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "optimizer": t.optimizer,
        "lr": t.lr,
        "batch_size": t.batch_size,
        "weight_decay": t.weight_decay,
        "schedule": t.schedule.name,
        "epochs": t.epochs or 0,
        "max_steps": t.max_steps or 0,
        "seed": cfg.seed,
    }


def run_training(
    config: ExperimentConfig | None = None,
    runs_root: str | Path = "runs",
    resume: str | Path | None = None,
    extra_callbacks: list[Callback] | None = None,
    console: Console | None = None,
    data: DataBundle | None = None,
    model: nn.Module | None = None,
) -> Experiment:
    """Train a config in a new run folder, or continue the run folder ``resume`` exactly."""
    if resume is not None:
        run_dir = Path(resume)
        saved = load_config(run_dir / "config.yaml")
        if config is not None and config.model_dump() != saved.model_dump():
            warnings.warn(
                f"--resume uses the config saved in {run_dir}, not the one given", stacklevel=2
            )
        config = saved
    elif config is None:
        raise ValueError("give a config, or a run folder to resume")
    else:
        run_dir = new_run_dir(runs_root, config.name)
        (run_dir / "config.yaml").write_text(config.to_yaml())
    exp = build_experiment(config, run_dir, extra_callbacks, console, data, model)
    if resume is None:
        write_json(
            run_dir / "environment.json", environment_info(config.seed, torch.get_num_threads())
        )
        write_json(run_dir / "data.json", exp.data.meta.to_dict())
    elif (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        path, tensors, state = load_latest(run_dir / "checkpoints")
        exp.trainer.load_state_dict(tensors, state)
        (console or Console(stderr=True)).print(f"resumed from {path} (step {state['step']})")
    try:
        exp.trainer.fit()
    except BaseException:
        metrics_log = next(c for c in exp.trainer.callbacks if isinstance(c, MetricsLog))
        metrics_log.write_status(exp.trainer, "failed")
        raise
    return exp
