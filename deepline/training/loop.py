"""The training loop: short, with named events; everything else is a callback."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch
from torch import nn

from deepline.config import TrainConfig
from deepline.data.loaders import BatchLoader, Loader
from deepline.tasks.base import Evaluator, Task
from deepline.training import distributed
from deepline.training.events import EVENTS, Callback, RestartFromState, StopTraining, handlers
from deepline.training.optim import build_optimizer, build_scheduler
from deepline.training.state import load_trainer_state, trainer_state


class Trainer:
    """Fits ``model`` on ``train`` batches, validating on ``val`` after each epoch.

    State a callback may read: ``step`` (optimizer steps done), ``epoch`` (the current epoch's
    index; at ``epoch_end``, the number of completed epochs), ``batch`` (the inputs and targets
    about to be used; a ``batch_start`` callback may replace it), ``loss`` (last batch, averaged
    over processes), ``logs`` (latest value of every metric, e.g. ``logs["val/accuracy"]``).
    A callback sets ``skip_step`` in ``after_backward`` to drop the pending optimizer step.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train: Loader,
        val: BatchLoader | None,
        config: TrainConfig,
        callbacks: list[Callback] | None = None,
        seed: int = 0,
    ) -> None:
        self.model, self.task, self.train_loader, self.val_loader = model, task, train, val
        self.config, self.seed = config, seed
        self.callbacks = list(callbacks or [])
        self.dist = distributed.current()
        self.memory_format = (
            torch.channels_last if config.channels_last else torch.contiguous_format
        )
        self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        # DDP averages gradients over processes; ``model`` stays the plain module for saving
        self.forward_model: nn.Module = model
        if self.dist.enabled:
            self.forward_model = nn.parallel.DistributedDataParallel(model)
        self.optimizer = build_optimizer(model, config)
        self.steps_per_epoch = math.ceil(len(train) / config.accumulate)
        self.total_steps = config.max_steps or (config.epochs or 1) * self.steps_per_epoch
        self.scheduler = build_scheduler(
            self.optimizer, config.schedule, self.total_steps, self.steps_per_epoch
        )
        self.step = self.epoch = 0
        self.loss = float("nan")
        self.lr_scale = 1.0
        self.skip_step = False
        self.logs: dict[str, float] = {}
        self.epoch_loss_sum, self.epoch_batches = 0.0, 0
        self.stop_reason: str | None = None
        self.last_evaluator: Evaluator | None = None  # of the latest validation
        self.start_time = time.perf_counter()
        self._handlers = {event: handlers(self.callbacks, event) for event in EVENTS}

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Trainer:
        self.fire("fit_start")
        try:
            while self.step < self.total_steps:
                self.train_loader.set_epoch(self.epoch)
                self.fire("epoch_start")
                try:
                    epoch_done = self._train_epoch()
                except RestartFromState:  # a callback restored an earlier state: go on from it
                    continue
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
        self.forward_model.train()
        accumulate, n_batches = self.config.accumulate, len(self.train_loader)
        for x, y in self.train_loader:
            self.batch = (self._layout(x), y)
            self.fire("batch_start")
            with self._autocast():
                loss = self.task.step_loss(self.forward_model, self.batch)
            (loss / accumulate).backward()
            self.loss = self._global_mean(float(loss.detach()))
            self.fire("after_backward")
            if not self.skip_step:
                self.epoch_loss_sum += self.loss
                self.epoch_batches += 1
            position = self.train_loader.position
            if position % accumulate == 0 or position == n_batches:
                self._optimizer_step()
                if self.step >= self.total_steps:
                    return position == n_batches
        return True

    def _optimizer_step(self) -> None:
        if self.skip_step:  # a callback refused this update (a non-finite gradient, say)
            self.skip_step = False
            self.optimizer.zero_grad(set_to_none=True)
            return
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.fire("step_end")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Evaluate on the validation batches; results go to ``logs`` as ``val/<metric>``.

        In a distributed run each process takes its share and the metrics are reduced.
        """
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

    def _global_mean(self, value: float) -> float:
        if not self.dist.enabled:
            return value
        return distributed.all_reduce_sum([value])[0] / self.dist.world_size

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

    def scale_lr(self, factor: float) -> None:
        """Multiply the learning rate, now and for the rest of the schedule."""
        self.lr_scale *= factor
        self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
        for group in self.optimizer.param_groups:
            group["lr"] *= factor

    # ------------------------------------------------------------------ state
    def state_dict(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """(tensor groups, JSON values): everything needed to continue exactly."""
        return trainer_state(self)

    def load_state_dict(self, tensors: dict[str, dict[str, torch.Tensor]], values: dict) -> None:
        load_trainer_state(self, tensors, values)
