"""The training loop: short, with named events; everything else is a callback."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch
from torch import nn

from deepline.config import TrainConfig
from deepline.data.loaders import BatchLoader
from deepline.tasks.base import Task
from deepline.training.events import EVENTS, Callback, StopTraining, handlers
from deepline.training.optim import build_optimizer, build_scheduler
from deepline.training.seed import rng_state, set_rng_state


class Trainer:
    """Fits ``model`` on ``train`` batches, validating on ``val`` after each epoch.

    State a callback may read: ``step`` (optimizer steps done), ``epoch`` (the current epoch's
    index; at ``epoch_end``, the number of completed epochs), ``loss`` (last batch),
    ``logs`` (latest value of every metric, e.g. ``logs["val/accuracy"]``), ``history``.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train: BatchLoader,
        val: BatchLoader | None,
        config: TrainConfig,
        callbacks: list[Callback] | None = None,
    ) -> None:
        self.model, self.task, self.train_loader, self.val_loader = model, task, train, val
        self.config = config
        self.callbacks = list(callbacks or [])
        self.optimizer = build_optimizer(model, config)
        self.steps_per_epoch = math.ceil(len(train) / config.accumulate)
        self.total_steps = config.max_steps or (config.epochs or 1) * self.steps_per_epoch
        self.scheduler = build_scheduler(
            self.optimizer, config.schedule, self.total_steps, self.steps_per_epoch
        )
        self.step = self.epoch = 0
        self.loss = float("nan")
        self.logs: dict[str, float] = {}
        self.epoch_loss_sum, self.epoch_batches = 0.0, 0
        self.stop_reason: str | None = None
        self.start_time = time.perf_counter()
        self._handlers = {event: handlers(self.callbacks, event) for event in EVENTS}
        self.memory_format = (
            torch.channels_last if config.channels_last else torch.contiguous_format
        )
        self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Trainer:
        self.start_time = time.perf_counter()
        self.fire("fit_start")
        try:
            while self.step < self.total_steps:
                self.train_loader.set_epoch(self.epoch)
                self.fire("epoch_start")
                epoch_done = self._train_epoch()
                self.validate()
                self.fire("eval_end")
                if epoch_done:
                    self.logs["train/loss_epoch"] = self.epoch_loss_sum / max(self.epoch_batches, 1)
                    self.epoch_loss_sum, self.epoch_batches = 0.0, 0
                    self.epoch += 1  # at epoch_end, ``epoch`` counts the completed epochs
                    self.fire("epoch_end")
        except StopTraining as stop:
            self.stop_reason = str(stop) or type(stop).__name__
        self.fire("fit_end")
        return self

    def _train_epoch(self) -> bool:
        """One pass over the training batches; False if the step budget ended it early."""
        self.model.train()
        accumulate, n_batches = self.config.accumulate, len(self.train_loader)
        for x, y in self.train_loader:
            x = self._layout(x)
            self.batch = (x, y)
            self.fire("batch_start")
            with self._autocast():
                loss = self.task.loss(self.model(x), y)
            (loss / accumulate).backward()
            self.loss = float(loss.detach())
            self.epoch_loss_sum += self.loss
            self.epoch_batches += 1
            self.fire("after_backward")
            position = self.train_loader.position
            if position % accumulate == 0 or position == n_batches:
                self._optimizer_step()
                if self.step >= self.total_steps:
                    return position == n_batches
        return True

    def _optimizer_step(self) -> None:
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.fire("step_end")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Evaluate on the validation batches; results go to ``logs`` as ``val/<metric>``."""
        if self.val_loader is None:
            return {}
        self.model.eval()
        evaluator = self.task.evaluator(keep_mistakes=32)
        for x, y in self.val_loader:
            with self._autocast():
                out = self.model(self._layout(x))
            evaluator.update(x, out, y)
        self.model.train()
        self.last_evaluator = evaluator
        results = {f"val/{k}": v for k, v in evaluator.compute().items()}
        self.logs.update(results)
        return results

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.precision == "bf16":
            device = "cuda" if next(self.model.parameters()).is_cuda else "cpu"
            return torch.autocast(device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fire(self, event: str) -> None:
        for handler in self._handlers[event]:
            handler(self)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """(tensor groups, JSON-able values): everything needed to continue exactly."""
        opt = self.optimizer.state_dict()
        opt_tensors, opt_values = _split_tensors(opt["state"], "optimizer")
        rng_tensors, rng_values = rng_state()
        rng_tensors["rng.loader"] = self.train_loader.generator_state()
        state_tensors = {**opt_tensors, **rng_tensors}
        values = {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_batches": self.epoch_batches,
            "elapsed": self.elapsed,
            "logs": self.logs,
            "optimizer": {"param_groups": opt["param_groups"], "values": opt_values},
            # the schedule itself is rebuilt from the config: save only where it stands
            "scheduler": {
                **self.scheduler.state_dict(),
                "lr_lambdas": [None] * len(self.optimizer.param_groups),
            },
            "loader": self.train_loader.state_dict(),
            "rng": rng_values,
            "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks},
        }
        return {"model": self.model.state_dict(), "state": state_tensors}, values

    def load_state_dict(self, tensors: dict[str, dict[str, torch.Tensor]], values: dict) -> None:
        self.model.load_state_dict(tensors["model"])
        state = tensors["state"]
        opt_state = _join_tensors(state, values["optimizer"]["values"], "optimizer")
        self.optimizer.load_state_dict(
            {"state": opt_state, "param_groups": values["optimizer"]["param_groups"]}
        )
        self.scheduler.load_state_dict(values["scheduler"])
        self.epoch, self.step = values["epoch"], values["step"]
        self.epoch_loss_sum, self.epoch_batches = values["epoch_loss_sum"], values["epoch_batches"]
        self.logs = dict(values["logs"])
        self.train_loader.load_state_dict(values["loader"])
        self.train_loader.set_generator_state(state["rng.loader"])
        set_rng_state({k: v for k, v in state.items() if k.startswith("rng.")}, values["rng"])
        for cb in self.callbacks:
            cb.load_state_dict(values["callbacks"].get(cb.name, {}))
        self.start_time = time.perf_counter() - values.get("elapsed", 0.0)


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
