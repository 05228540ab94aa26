"""The training loop: short, with named events; everything else is a callback."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any

import torch
from torch import nn

from deepline.config import TrainConfig
from deepline.data.loaders import BatchLoader, Loader, PlaysWithModel
from deepline.tasks.base import Evaluator, Task
from deepline.training import distributed
from deepline.training.device import Precision, Prefetcher, fits_on_device, resolve_device
from deepline.training.events import EVENTS, Callback, RestartFromState, StopTraining, handlers
from deepline.training.optim import build_optimizer, build_scheduler
from deepline.training.state import load_trainer_state, trainer_state


def moving_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s parameters and buffers (torch's
    ``AveragedModel``): ``ema = decay * ema + (1 - decay) * weights`` after every update."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class Trainer:
    """Fits ``model`` on ``train`` batches on ``config.device``, validating on ``val`` after
    each epoch.

    State a callback may read: ``step`` (optimizer steps done), ``epoch`` (the current epoch's
    index; at ``epoch_end``, the number of completed epochs), ``batch`` (the inputs and targets
    about to be used, on the device; a ``batch_start`` callback may replace it), ``is_update``
    (this batch ends an optimizer step: its gradients are complete), ``last_loss`` (the last
    batch's loss, a tensor on the device: reading it waits for the device), ``logs`` (latest
    value of every metric, e.g. ``logs["train/loss"]`` at log steps, ``logs["val/accuracy"]``).
    A callback sets ``skip_step`` in ``after_backward`` to drop the pending optimizer step.

    Values cross from the device to the host only through ``to_host`` (counted in
    ``host_reads``): at log steps, at epoch ends, and where a callback asks (the non-finite
    guard's one fused check per update).
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
        self.model, self.task, self.config, self.seed = model, task, config, seed
        self.callbacks = list(callbacks or [])
        self.dist = distributed.current()
        self.device = resolve_device(config.device, self.dist.local_rank)
        self.precision = Precision(config.precision, self.device)
        if config.tf32 and self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.memory_format = (
            torch.channels_last if config.channels_last else torch.contiguous_format
        )
        self.model.to(self.device, memory_format=self.memory_format)  # type: ignore[call-overload]
        self.train_loader = self._place(train, config.data_on_device)
        self.val_loader = self._place(val, config.data_on_device) if val is not None else None
        self._syncs = _SyncCount()
        # DDP averages gradients over processes (DP-SGD instead sums its clipped, noised
        # gradients itself); ``model`` stays the plain module for saving
        self.ddp = self._ddp() if self.dist.enabled and config.privacy is None else None
        self.forward_model: nn.Module = self.ddp or model
        if config.compile:
            self.forward_model = EagerOnFailure(self.forward_model)
        self.optimizer = build_optimizer(model, config)
        # the weights' moving average (torch's own), what validation and inference use
        self.ema = moving_average(model, config.ema) if config.ema is not None else None
        self.steps_per_epoch = math.ceil(len(train) / config.accumulate)
        self.total_steps = config.max_steps or (config.epochs or 1) * self.steps_per_epoch
        # a model fitted in closed form (counts, similarities) has nothing to step
        self.closed_form = not any(p.requires_grad for p in model.parameters())
        if self.closed_form:
            self.total_steps = 0
        self.scheduler = build_scheduler(
            self.optimizer, config.schedule, self.total_steps, self.steps_per_epoch
        )
        self.step = self.epoch = 0
        self.lr_scale = 1.0
        self.skip_step = self.is_update = False
        self.logs: dict[str, float] = {}
        self.last_loss = torch.full((), float("nan"), device=self.device)
        # [sum, count] of batch losses on the device: this update's, since the last log step,
        # and this epoch's; read on the host only when logged
        self.update_loss = torch.zeros(2, device=self.device, dtype=torch.float64)
        self.window_loss = torch.zeros_like(self.update_loss)
        self.epoch_loss = torch.zeros_like(self.update_loss)
        self.host_reads = 0
        self.stop_reason: str | None = None
        self.last_evaluator: Evaluator | None = None  # of the latest validation
        self.start_time = time.perf_counter()
        # the loss of one training batch: the task's, unless a training method (FixMatch, ...)
        # installs its own at fit_start
        self.objective = task.step_loss
        self._handlers = {event: handlers(self.callbacks, event) for event in EVENTS}

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Trainer:
        self.fire("fit_start")
        try:
            if self.closed_form and self.epoch == 0:  # validated and saved once, as an epoch
                self.validate()
                self.fire("eval_end")
                self.epoch = 1
                self.fire("epoch_end")
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
                    self.logs["train/loss_epoch"] = self._mean_over_processes(self.epoch_loss)
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
        for x, *rest in self.train_loader:
            position = self.train_loader.position
            self.is_update = position % accumulate == 0 or position == n_batches
            self.batch = (self.layout(x), *rest)
            self.fire("batch_start")
            with self._gradient_sync(self.is_update):  # micro-steps skip DDP's all-reduce
                with self.precision.autocast():
                    loss = self.objective(self.forward_model, self.batch)
                self.precision.scaler.scale(loss / accumulate).backward()
            self.last_loss = loss.detach().float()
            self.update_loss[0] += self.last_loss
            self.update_loss[1] += 1
            if self.is_update:
                self.fire("after_backward")
                self._optimizer_step()
                if self.step >= self.total_steps:
                    return position == n_batches
        return True

    def _optimizer_step(self) -> None:
        scaler = self.precision.scaler
        if self.skip_step:  # a callback refused this update (a non-finite gradient, say)
            self.skip_step = False
            self.update_loss.zero_()
            self.optimizer.zero_grad(set_to_none=True)
            return
        self.window_loss += self.update_loss
        self.epoch_loss += self.update_loss
        self.update_loss.zero_()
        if self.config.grad_clip is not None:
            scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        scaler.step(self.optimizer)  # skipped by the scaler when fp16 gradients overflowed
        scaler.update()
        with warnings.catch_warnings():  # a step the scaler skipped still moves the schedule
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        if self.step % self.config.log_every_steps == 0:
            self.logs["train/loss"] = self._mean_over_processes(self.window_loss)
            if isinstance(self.train_loader, PlaysWithModel):  # a policy's training episodes
                measured = self.train_loader.measurements().items()
                self.logs.update({f"train/{k}": v for k, v in measured})
        self.fire("step_end")

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, kept as the best and exported: their moving
        average with ``train.ema``, else the trained ones."""
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Evaluate on the validation batches; results go to ``logs`` as ``val/<metric>``.

        In a distributed run each process takes its share and the metrics are reduced.
        """
        if self.val_loader is None:
            return {}
        model = self.eval_model
        model.eval()
        evaluator = self.task.evaluator(keep_mistakes=32).to(self.device)
        for x, y in self.val_loader:
            with self.precision.autocast():
                out = model(self.layout(x))
            evaluator.update(x, out, y)
        model.train()
        self.last_evaluator = evaluator
        results = {f"val/{k}": v for k, v in evaluator.compute().items()}
        self.logs.update(results)
        return results

    # ------------------------------------------------------------------ the device
    def to_host(self, value: torch.Tensor) -> Any:
        """A tensor's value on the host: waits for the device, so it is counted."""
        self.host_reads += 1
        return value.item()

    def _mean_over_processes(self, total: torch.Tensor) -> float:
        """sum / count of a [sum, count] accumulator over every process, which is then reset."""
        reduced = distributed.all_reduce_tensor(total.clone())
        total.zero_()
        summed, count = reduced.tolist()
        self.host_reads += 1
        return float(summed / count) if count else float("nan")

    def _place(self, loader: Any, setting: bool | str) -> Any:
        """The loader's data kept on the device when asked (``auto``: when it fits), else each
        batch copied there ahead of use."""
        if self.device.type == "cpu":
            return loader
        if isinstance(loader, PlaysWithModel):  # makes its batches by acting: nothing to copy
            return loader.to(self.device)
        fits = setting == "auto" and fits_on_device(loader.tensors(), self.device)
        keep = setting is True or fits
        return loader.to(self.device) if keep else Prefetcher(loader, self.device)

    def _ddp(self) -> nn.parallel.DistributedDataParallel:
        cuda = self.device.type == "cuda"
        ddp = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if cuda else None
        )
        # the hook holds the counter, never the trainer: DDP keeps its hook in C++, where a
        # reference back to the trainer (which holds DDP) is a cycle no collector can see;
        # the process group would then outlive destroy_process_group into interpreter exit
        ddp.register_comm_hook(self._syncs, _counted_all_reduce)
        return ddp

    @property
    def grad_syncs(self) -> int:
        """Gradient all-reduces DDP has run (0 in one process)."""
        return self._syncs.count

    def _gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        if self.ddp is None or sync:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the model's memory layout (channels-last for images when set)."""
        return x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x

    # ------------------------------------------------------------------ events and state
    def fire(self, event: str) -> None:
        for handler in self._handlers[event]:
            handler(self)

    @property
    def loss(self) -> float:
        """The last batch's loss on the host (waits for the device)."""
        return float(self.to_host(self.last_loss))

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

    def state_dict(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """(tensor groups, JSON values): everything needed to continue exactly, on the CPU."""
        return trainer_state(self)

    def load_state_dict(self, tensors: dict[str, dict[str, torch.Tensor]], values: dict) -> None:
        load_trainer_state(self, tensors, values)


class EagerOnFailure(nn.Module):
    """``torch.compile`` of a module, falling back to the module itself (with one warning) when
    compiling fails at its first call."""

    def __init__(self, module: nn.Module, backend: Any = "inductor") -> None:
        super().__init__()
        self.module = module
        self.compiled: Any = torch.compile(module, backend=backend)
        self.failed = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # the compiler's errors are of many classes
                self.failed = True
                warnings.warn(
                    f"train.compile: torch.compile failed ({type(err).__name__}: "
                    f"{str(err).splitlines()[0][:200]}); training continues in eager mode",
                    stacklevel=2,
                )
        return self.module(*args, **kwargs)


class _SyncCount:
    """The state of DDP's gradient hook: how many all-reduces it ran."""

    def __init__(self) -> None:
        self.count = 0


def _counted_all_reduce(state, bucket):
    # no annotations: DDP checks that a hook's are exactly GradBucket and Future
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    state.count += 1
    return allreduce_hook(None, bucket)  # type: ignore[arg-type]  # None: the default group
