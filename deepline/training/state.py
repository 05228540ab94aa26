"""The trainer's full state as (tensor groups, JSON values): what a checkpoint holds.

Random number generators and the training loader's place are saved per process (each process
plays its own environments and fills its own replay buffer), so a resume on the same number of
processes continues exactly; on a different number, each process reseeds (and says so) and
takes the loader of the saved process its rank falls on.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

import torch

from deepline.data.loaders import KeepsTensors
from deepline.errors import DeeplineError
from deepline.training import distributed
from deepline.training.seed import rng_state, set_rng_state

if TYPE_CHECKING:
    from deepline.training.loop import Trainer

KERNEL_OPTIONS = ("fused", "foreach")  # optimizer options that follow the device, not the run


def trainer_state(trainer: Trainer) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Collective in distributed runs: every process must call it; rank 0 gets every RNG."""
    opt = trainer.optimizer.state_dict()
    opt_tensors, opt_values = _split_tensors(opt["state"], "optimizer")
    tensors, values = rng_state()
    loader = trainer.train_loader
    kept = loader.state_tensors() if isinstance(loader, KeepsTensors) else {}  # a replay buffer
    kept = {k: v.detach().cpu() for k, v in kept.items()}
    per_rank = distributed.gather_to_main((tensors, values, loader.state_dict(), kept)) or []
    epoch_loss_sum, epoch_batches = trainer.epoch_loss.tolist()
    rng_tensors = {f"rank{r}.{k}": v for r, (ts, *_) in enumerate(per_rank) for k, v in ts.items()}
    state = {
        "epoch": trainer.epoch,
        "step": trainer.step,
        "world_size": trainer.dist.world_size,
        "epoch_loss_sum": epoch_loss_sum,  # this process's; reduced at the epoch's end
        "epoch_batches": int(epoch_batches),
        "elapsed": trainer.elapsed,
        "lr_scale": trainer.lr_scale,
        "logs": trainer.logs,
        "optimizer": {"param_groups": opt["param_groups"], "values": opt_values},
        # the schedule itself is rebuilt from the config: save only where it stands
        "scheduler": {
            **trainer.scheduler.state_dict(),
            "lr_lambdas": [None] * len(trainer.optimizer.param_groups),
        },
        "loaders": [state for _, _, state, _ in per_rank],  # every process's place
        "rng": [v for _, v, *_ in per_rank],
        "scaler": trainer.precision.scaler.state_dict(),  # fp16's loss scale ({} otherwise)
        "callbacks": {cb.name: cb.state_dict() for cb in trainer.callbacks},
    }
    groups = {"model": trainer.model.state_dict(), "state": {**opt_tensors, **rng_tensors}}
    if trainer.ema is not None:  # the averaged weights, which inference loads (``weights``)
        groups["ema"] = trainer.ema.module.state_dict()
        state["ema_updates"] = int(trainer.ema.n_averaged)
    if isinstance(loader, KeepsTensors):
        groups["loader"] = {
            f"rank{r}.{k}": v for r, (*_, ts) in enumerate(per_rank) for k, v in ts.items()
        }
    # CPU copies: a checkpoint loads on any device
    return {g: {k: v.detach().cpu() for k, v in t.items()} for g, t in groups.items()}, state


def load_trainer_state(
    trainer: Trainer, tensors: dict[str, dict[str, torch.Tensor]], values: dict[str, Any]
) -> None:
    trainer.model.load_state_dict(tensors["model"])
    if trainer.ema is not None:
        if "ema" not in tensors:
            raise DeeplineError(
                "train.ema: this checkpoint was written without a moving average; resume "
                "it without train.ema, or train anew"
            )
        trainer.ema.module.load_state_dict(tensors["ema"])
        trainer.ema.n_averaged.fill_(values["ema_updates"])
    state = tensors["state"]
    opt_state = _join_tensors(state, values["optimizer"]["values"], "optimizer")
    # how the optimizer runs (fused kernels or not) follows this device, not the saved run's
    kernels = [{k: g.get(k) for k in KERNEL_OPTIONS} for g in trainer.optimizer.param_groups]
    trainer.optimizer.load_state_dict(
        {"state": opt_state, "param_groups": values["optimizer"]["param_groups"]}
    )
    for group, options in zip(trainer.optimizer.param_groups, kernels):
        group.update(options)
    trainer.scheduler.load_state_dict(dict(values["scheduler"]))
    trainer.epoch, trainer.step = values["epoch"], values["step"]
    trainer.epoch_loss.copy_(
        torch.tensor([values["epoch_loss_sum"], values["epoch_batches"]], dtype=torch.float64)
    )
    trainer.window_loss.zero_()
    trainer.update_loss.zero_()
    if values.get("scaler") and trainer.precision.scaling:
        trainer.precision.scaler.load_state_dict(values["scaler"])
    trainer.lr_scale = values.get("lr_scale", 1.0)
    trainer.logs = dict(values["logs"])
    _load_loader(trainer, tensors.get("loader", {}), values)
    _load_rng(trainer, state, values)
    for cb in trainer.callbacks:
        cb.load_state_dict(values["callbacks"].get(cb.name, {}))
    trainer.start_time -= values.get("elapsed", 0.0)


def _load_loader(
    trainer: Trainer, tensors: dict[str, torch.Tensor], values: dict[str, Any]
) -> None:
    """This process's loader state, or (on another number of processes) that of the saved
    process its rank falls on. Checkpoints from before per-process loaders kept one."""
    states = values.get("loaders") or [values["loader"]]
    source = trainer.dist.rank % len(states)
    trainer.train_loader.load_state_dict(states[source])
    if isinstance(trainer.train_loader, KeepsTensors):
        prefix = f"rank{source}."
        if any(re.match(r"rank\d+\.", k) for k in tensors):  # per process
            tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        trainer.train_loader.load_state_tensors(tensors)


def _load_rng(trainer: Trainer, state: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    rank, world = trainer.dist.rank, trainer.dist.world_size
    if len(values["rng"]) != world:
        warnings.warn(
            f"checkpoint written by {len(values['rng'])} processes, resumed on {world}: "
            "data order and weights carry over; random streams restart from the seed",
            stacklevel=2,
        )
        torch.manual_seed(trainer.seed + 7919 * values["step"] + rank)
        return
    prefix = f"rank{rank}."
    mine = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    mine.pop("rng.loader", None)  # checkpoints before loaders seeded each batch kept one
    set_rng_state(mine, values["rng"][rank])


def _split_tensors(state: dict[int, dict[str, Any]], prefix: str) -> tuple[dict, dict]:
    """Optimizer per-parameter state -> ({'optimizer.3.exp_avg': tensor}, {'3': {'x': 1}})."""
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, dict[str, Any]] = {}
    for pid, entry in state.items():
        for key, v in entry.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{pid}.{key}"] = v
            else:
                values.setdefault(str(pid), {})[key] = v
    return tensors, values


def _join_tensors(tensors: dict[str, torch.Tensor], values: dict, prefix: str) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        if name.startswith(prefix + "."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    for pid, entry in values.items():
        state.setdefault(int(pid), {}).update(entry)
    return state
