"""One Optuna trial = one normal deepline run, pruned on its per-epoch validation metric."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from deepline.config import ExperimentConfig, load_config
from deepline.errors import ConfigError
from deepline.training.events import Callback, StopTraining
from deepline.tune.space import Param, Space

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Sample the space; a conditional parameter after the ones it depends on, and only when
    its condition holds (so the order of the YAML file does not matter)."""
    chosen: dict[str, Any] = {}
    decided: set[str] = set()
    pending = dict(space.params)
    while pending:
        ready = [n for n, p in pending.items() if set(p.when or {}) <= decided]
        if not ready:
            raise ConfigError(f"search space: circular 'when' among {', '.join(pending)}")
        for name in ready:
            param = pending.pop(name)
            decided.add(name)
            if all(chosen.get(k) == v for k, v in (param.when or {}).items()):
                chosen[name] = _suggest_one(trial, name, param)
    return chosen


def _suggest_one(trial: optuna.Trial, name: str, p: Param) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(name, p.choices or [])
    if p.type == "int":
        return trial.suggest_int(
            name, int(p.low or 0), int(p.high or 0), step=int(p.step or 1), log=p.log
        )
    return trial.suggest_float(name, float(p.low or 0), float(p.high or 0), step=p.step, log=p.log)


class OptunaPruning(Callback):
    """Reports the metric to the trial after each epoch; stops the run when Optuna prunes it."""

    order = 96

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.pruned = False

    def epoch_end(self, trainer: Trainer) -> None:
        value = trainer.logs.get(self.metric)
        if value is None:
            raise StopTraining(f"the run logs no '{self.metric}' to tune")
        self.trial.report(value, trainer.epoch)
        if self.trial.should_prune():
            self.pruned = True
            raise StopTraining(f"pruned by Optuna after epoch {trainer.epoch}")


class Objective:
    """Callable for ``study.optimize``: trains ``base`` with the trial's values."""

    def __init__(self, base: ExperimentConfig, space: Space, trials_dir: Path) -> None:
        self.base, self.space, self.trials_dir = base, space, trials_dir

    def __call__(self, trial: optuna.Trial) -> float:
        from deepline.training.experiment import run_training

        values = suggest(trial, self.space)
        trial.set_user_attr("pid", os.getpid())
        cfg = load_config(self.base.model_dump(), {**values, "name": f"trial-{trial.number:03d}"})
        pruning = OptunaPruning(trial, self.space.metric)
        trial.set_user_attr("run_dir", str(self.trials_dir / cfg.name))
        exp = run_training(cfg, self.trials_dir, extra_callbacks=[pruning])
        trial.set_user_attr("run_dir", str(exp.run_dir))
        if pruning.pruned:
            raise optuna.TrialPruned()
        value = exp.trainer.logs.get(self.space.metric, math.nan)
        if not math.isfinite(value):
            raise optuna.TrialPruned()  # a diverged trial teaches the sampler nothing usable
        return value
