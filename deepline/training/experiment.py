"""Assemble an experiment from its config: data -> task -> model -> trainer -> run folder."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from deepline.config import ExperimentConfig, TrainConfig, load_config
from deepline.data import DataSplits
from deepline.data.loaders import BatchLoader, CyclingLoader, PlaysWithModel
from deepline.errors import ConfigError
from deepline.runs import environment_info, new_run_dir, write_json
from deepline.tasks import Task, build_task, task_class
from deepline.training import distributed
from deepline.training.callbacks import (
    Checkpointing,
    EarlyStopping,
    MetricsLog,
    NonFiniteGuard,
    ProgressBar,
    TensorBoard,
)
from deepline.training.checkpoint import list_checkpoints, load_latest
from deepline.training.device import resolve_device
from deepline.training.events import Callback
from deepline.training.loop import Trainer
from deepline.training.privacy import DifferentialPrivacy, PoissonLoader
from deepline.training.seed import seed_everything


@dataclass
class Experiment:
    """Everything built from one config, ready to ``fit``."""

    config: ExperimentConfig
    run_dir: Path
    data: DataSplits
    task: Task
    model: nn.Module
    trainer: Trainer


def build_experiment(
    config: ExperimentConfig,
    run_dir: Path,
    extra_callbacks: list[Callback] | None = None,
    console: Console | None = None,
    data: DataSplits | None = None,
    model: nn.Module | None = None,
) -> Experiment:
    """Seed, load data, build task, model, loaders and trainer with the default callbacks.

    ``data`` and ``model``, when given, replace what the config would load and build. In a
    distributed run each process takes every ``world_size``-th example of each global batch.
    """
    cfg, env = config, distributed.current()
    threads = cfg.train.num_threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    seed_everything(cfg.seed, cfg.train.deterministic)
    data = data if data is not None else task_class(cfg.task.name).load_data(cfg.data)
    if cfg.data.synthetic is not None and "synthetic" not in data.meta.sizes:
        from deepline.training.synthetic import with_synthetic

        data = with_synthetic(data, cfg.data.synthetic)
    task = build_task(cfg.task, data.meta)
    task.check_training(cfg.train)
    torch.manual_seed(cfg.seed)  # model initialisation independent of how data was loaded
    if model is None:
        model = task.build_model(cfg.model)
        if cfg.model.init_from is not None:
            _start_from(model, cfg.model.init_from, console)
        prune = cfg.train.prune
        if prune is not None and prune.structure == "channels":
            from deepline.training.structured import prune_channels

            prune_channels(model, data.train.x[:2], prune.amount)
        if cfg.model.freeze:
            from deepline.training.init_from import freeze

            freeze(model, cfg.model.freeze)
    fit_closed_form = getattr(model, "fit_closed_form", None)
    if callable(fit_closed_form):  # counted from the training split, before any step
        fit_closed_form(data.train.x, data.train.y)
    torch.manual_seed(cfg.seed + env.rank)  # dropout differs between processes
    batch = per_process_batch(cfg.train.batch_size, env.world_size)
    train, val = task.loaders(cfg, data, batch, env.rank, env.world_size)
    if isinstance(train, PlaysWithModel):  # a policy's rollouts are played by the model itself
        train.attach(model)
    few_labels = cfg.data.labels_per_class is not None and cfg.train.method is None
    if few_labels and cfg.train.privacy is None and type(train) is BatchLoader:
        train = CyclingLoader(train, cfg.train.steps_per_epoch)  # an epoch: steps, not 2 batches
    if cfg.train.privacy is not None:
        train = poisson_loader(train, batch, cfg.seed, env.rank, env.world_size)
    methods: list[Callback] = []
    if cfg.train.method is not None:
        train, method = unlabelled_method(cfg, task, data, train, batch, env.rank, env.world_size)
        methods.append(method)
    callbacks = default_callbacks(cfg, run_dir, console) + methods + list(extra_callbacks or [])
    callbacks = [cb for cb in callbacks if env.is_main or not cb.main_only]
    trainer = Trainer(model, task, train, val, cfg.train, callbacks, seed=cfg.seed)
    return Experiment(cfg, run_dir, data, task, model, trainer)


def _start_from(model: nn.Module, run_dir: str, console: Console | None) -> None:
    from deepline.training.init_from import load_initial_weights

    loaded, fresh = load_initial_weights(model, run_dir)
    if distributed.current().is_main:
        new = f"; new: {', '.join(fresh)}" if fresh else ""
        (console or Console(stderr=True)).print(
            f"model.init_from {run_dir}: {len(loaded)} tensors loaded{new}", highlight=False
        )


def unlabelled_method(
    cfg: ExperimentConfig,
    task: Task,
    data: DataSplits,
    train: Any,
    batch: int,
    rank: int,
    world_size: int,
) -> tuple[BatchLoader, Callback]:
    """The labelled batches (``train.steps_per_epoch`` an epoch) and the callback of the
    method that learns from the unlabelled images (``train.method``)."""
    from deepline.config import ContrastiveConfig
    from deepline.data.transforms import BatchAugment
    from deepline.training.callbacks.contrastive import Contrastive
    from deepline.training.callbacks.semi_supervised import SemiSupervised
    from deepline.training.callbacks.unlabelled import Unlabelled

    method = cfg.train.method
    assert method is not None
    if data.unlabelled is None or not len(data.unlabelled):
        raise ConfigError(
            f"train.method {method.name} learns from unlabelled images: set "
            "data.labels_per_class to keep a few labels and leave the rest unlabelled"
        )
    if not task.calibratable or not isinstance(train, BatchLoader):
        raise ConfigError(
            f"train.method {method.name} needs a task that predicts classes; {task.name} does not"
        )
    fill = [-m / s for m, s in zip(data.meta.mean, data.meta.std, strict=True)]
    weak = BatchAugment(cfg.data.augment, fill=fill)
    source = Unlabelled(data.unlabelled, weak, data.meta.mean, data.meta.std, cfg.seed, rank,
                        world_size)  # fmt: skip
    callback: Callback = (
        Contrastive(method, data.train, source, batch) if isinstance(method, ContrastiveConfig)
        else SemiSupervised(method, source, batch)
    )  # fmt: skip
    return CyclingLoader(train, cfg.train.steps_per_epoch), callback


def poisson_loader(train: Any, batch: int, seed: int, rank: int, world_size: int) -> PoissonLoader:
    """The training examples, Poisson-sampled for DP-SGD (``train.privacy``)."""
    if not isinstance(train, BatchLoader):
        raise ConfigError(
            "train.privacy protects training examples: it needs a dataset of examples, not "
            "a stream of text windows"
        )
    return PoissonLoader(train.x, train.y, batch, seed, rank, world_size)


def per_process_batch(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise ConfigError(
            f"train.batch_size is the global batch: {global_batch} does not split evenly over "
            f"{world_size} processes (use a multiple of {world_size})"
        )
    return global_batch // world_size


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
        NonFiniteGuard(
            t.non_finite.policy,
            t.non_finite.max_skips,
            t.non_finite.lr_factor,
            t.non_finite.max_rollbacks,
        ),
    ]
    if t.privacy is not None:
        callbacks.append(DifferentialPrivacy(t.privacy))
    if t.tensorboard:
        callbacks.append(TensorBoard(run_dir / "tb", hparams_of(cfg), t.log_every_steps))
    if task_class(cfg.task.name).writes_samples(cfg.task):
        from deepline.training.callbacks.samples import Samples

        callbacks.append(Samples(run_dir, cfg.seed, t.checkpoint.monitor))
    if t.mlflow:
        from deepline.training.callbacks.mlflow_log import MLflowLogger

        callbacks.append(MLflowLogger(run_dir, cfg.name, hparams_of(cfg), t.log_every_steps))
    if t.prune is not None and t.prune.structure == "weights":
        from deepline.training.callbacks.pruning import Pruning

        callbacks.append(Pruning(t.prune))
    if t.qat is not None:
        from deepline.training.callbacks.quantization import QuantizationAware

        callbacks.append(QuantizationAware(t.qat))
    if t.distill is not None:
        from deepline.training.callbacks.distillation import Distillation

        callbacks.append(Distillation(t.distill))
    callbacks += example_methods(t)
    if t.early_stopping is not None:
        es = t.early_stopping
        callbacks.append(EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta, es.target))
    return callbacks


def example_methods(t: TrainConfig) -> list[Callback]:
    """The callbacks that change what the model learns from each batch (adversarial
    examples, mixup): the same in one place and on a federated client."""
    callbacks: list[Callback] = []
    if t.adversarial is not None:
        from deepline.training.callbacks.adversarial import AdversarialExamples

        callbacks.append(AdversarialExamples(t.adversarial))
    if t.mixup is not None:
        from deepline.training.callbacks.mixup import Mixup

        callbacks.append(Mixup(t.mixup))
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


def prepare_run_dir(
    config: ExperimentConfig | None, runs_root: str | Path, run_dir: str | Path | None
) -> tuple[ExperimentConfig, Path, bool]:
    """(config, folder, whether to resume). A folder that holds a config is continued."""
    if run_dir is not None and (Path(run_dir) / "config.yaml").is_file():
        run_dir = Path(run_dir)
        saved = load_config(run_dir / "config.yaml")
        if config is not None and config.model_dump() != saved.model_dump():
            warnings.warn(
                f"continuing {run_dir} with the config saved there, not the one given", stacklevel=3
            )
        return saved, run_dir, True
    if config is None:
        raise ConfigError("give a config, or a run folder to resume")
    if run_dir is not None:
        path = Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = new_run_dir(runs_root, config.name)
    (path / "config.yaml").write_text(config.to_yaml())
    return config, path, False


def run_training(
    config: ExperimentConfig | None = None,
    runs_root: str | Path = "runs",
    run_dir: str | Path | None = None,
    extra_callbacks: list[Callback] | None = None,
    console: Console | None = None,
    data: DataSplits | None = None,
    model: nn.Module | None = None,
) -> Experiment:
    """Train in a new folder under ``runs_root``, or in ``run_dir``: continued exactly from its
    last checkpoint when it is a run folder already (a resume, or a restart under torchrun).

    Under torchrun every process calls this; rank 0 makes the folder and tells the others.
    """
    env = distributed.init_distributed()
    if config is not None:  # a device that is not here: say so before making a run folder
        resolve_device(config.train.device, env.local_rank)
    prepared = prepare_run_dir(config, runs_root, run_dir) if env.is_main else None
    config, folder, resuming = distributed.broadcast(prepared)
    exp = build_experiment(config, folder, extra_callbacks, console, data, model)
    if not resuming and env.is_main:
        write_json(
            folder / "environment.json", environment_info(config.seed, torch.get_num_threads())
        )
        write_json(folder / "data.json", exp.data.meta.to_dict())
    if resuming and list_checkpoints(folder / "checkpoints"):
        path, tensors, state = load_latest(folder / "checkpoints")
        exp.trainer.load_state_dict(tensors, state)
        if env.is_main:
            (console or Console(stderr=True)).print(f"resumed from {path} (step {state['step']})")
    try:
        exp.trainer.fit()
    except BaseException:
        for cb in exp.trainer.callbacks:
            if isinstance(cb, MetricsLog):
                cb.write_status(exp.trainer, "failed")
        raise
    return exp
