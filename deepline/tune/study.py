"""Create or join an Optuna study and run trials in parallel worker processes.

Workers share the study through its storage: SQLite by default, any SQLAlchemy URL (PostgreSQL,
MySQL) to spread one study over many machines, each running ``deepline tune`` against it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from deepline.config import ExperimentConfig
from deepline.errors import DeeplineError
from deepline.tune.objective import Objective
from deepline.tune.space import Space

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")


@dataclass
class TuneSettings:
    trials: int
    storage: str
    study_name: str
    sampler: str = "tpe"
    pruner: str = "median"
    workers: int = 1
    timeout: float | None = None
    seed: int = 0


def make_sampler(name: str, space: Space, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        grid = {k: p.values() for k, p in space.params.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    raise DeeplineError(f"unknown sampler '{name}'. Allowed: {', '.join(SAMPLERS)}")


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """``median`` stops a trial whose validation metric is below the median of earlier trials
    at the same epoch (reported from 1), once a tenth of the epochs (at least 2) has passed: the
    first epochs favour small batches and high rates, which a longer run may not."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(2, epochs // 10))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise DeeplineError(f"unknown pruner '{name}'. Allowed: {', '.join(PRUNERS)}")


def open_study(settings: TuneSettings, space: Space, epochs: int) -> optuna.Study:
    """Create the study, or join it if it exists in the storage; a clear error if unreachable."""
    # heartbeats (to fail the trials of a dead worker) and grouped TPE are marked experimental
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        storage = optuna.storages.RDBStorage(
            settings.storage, heartbeat_interval=60, grace_period=180
        )
    except Exception as err:  # sqlalchemy raises many kinds; all mean the same to a user
        reason = str(err).split("\n", 1)[0]
        raise DeeplineError(
            f"cannot open the study storage '{settings.storage}': {reason}. "
            "Check the URL, that the database server is up and reachable, and "
            "that its driver is installed."
        ) from None
    study = optuna.create_study(
        storage=storage,
        study_name=settings.study_name,
        load_if_exists=True,
        direction=space.direction,
        sampler=make_sampler(settings.sampler, space, settings.seed),
        pruner=make_pruner(settings.pruner, epochs),
    )
    if study.trials:  # resumed or joined: a sampler seeded afresh would repeat its first draws
        seed = settings.seed + 7919 * len(study.trials)
        study.sampler = make_sampler(settings.sampler, space, seed)
    return study


def run_worker(
    settings: TuneSettings,
    base: dict[str, Any],
    space: dict[str, Any],
    trials_dir: str,
    worker: int,
) -> None:
    """One worker process: runs trials until the study holds ``settings.trials`` finished."""
    import torch

    from deepline.config import ExperimentConfig

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg, sp = ExperimentConfig.model_validate(base), Space.model_validate(space)
    settings = TuneSettings(**{**settings.__dict__, "seed": settings.seed + worker})
    study = open_study(settings, sp, cfg.train.epochs or 1)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    study.optimize(
        Objective(cfg, sp, Path(trials_dir)),
        timeout=settings.timeout,
        callbacks=[optuna.study.MaxTrialsCallback(settings.trials, states=finished)],
        catch=(DeeplineError,),
    )


def run_study(
    settings: TuneSettings, base: ExperimentConfig, space: Space, trials_dir: Path
) -> optuna.Study:
    """Run the search with ``settings.workers`` processes; the finished study."""
    study = open_study(settings, space, base.train.epochs or 1)  # fail early, in this process
    args = (settings, base.model_dump(), space.model_dump(), str(trials_dir))
    if settings.workers == 1:
        run_worker(*args, worker=0)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=run_worker, args=(*args, w)) for w in range(settings.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            raise DeeplineError(f"{len(failed)} tuning worker(s) failed (exit codes {failed})")
    return optuna.load_study(study_name=study.study_name, storage=settings.storage)
