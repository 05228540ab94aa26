"""Catch a NaN or infinite loss or gradient before the optimizer step, and act on a policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from deepline.errors import DeeplineError
from deepline.training import distributed
from deepline.training.checkpoint import list_checkpoints, load_latest
from deepline.training.device import grad_norm
from deepline.training.events import Callback, RestartFromState

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class NonFiniteError(DeeplineError):
    """Training met a non-finite loss or gradient it was told not to survive."""


class NonFiniteGuard(Callback):
    """Policies: ``stop`` (an error naming step and batch), ``skip`` (drop the update; stop
    after ``max_skips`` in a row), ``rollback`` (reload the last checkpoint and multiply the
    learning rate by ``lr_factor``; stop after ``max_rollbacks``).

    It checks once per optimizer step, when the update's gradients are complete (averaged over
    processes by DDP, or the check itself reduced under DP-SGD, so every process decides
    alike): the update's losses and the gradients' norm, in one fused check on the device and
    one read on the host. With fp16's gradient
    scaler, overflowing gradients are the scaler's to handle (it skips the step and lowers the
    scale): only the loss is checked then.
    """

    order = 5  # before anything reads the loss

    def __init__(
        self,
        policy: str = "stop",
        max_skips: int = 5,
        lr_factor: float = 0.5,
        max_rollbacks: int = 3,
    ) -> None:
        self.policy, self.max_skips = policy, max_skips
        self.lr_factor, self.max_rollbacks = lr_factor, max_rollbacks
        self.skipped_total = self.skipped_in_a_row = self.rollbacks = 0

    def batch_start(self, trainer: Trainer) -> None:
        first = (trainer.train_loader.position - 1) % trainer.config.accumulate == 0
        if self.policy == "skip" and first:  # a forward pass may write NaN into BatchNorm's
            self.buffers = {k: v.clone() for k, v in trainer.model.named_buffers()}

    def after_backward(self, trainer: Trainer) -> None:
        problem = self._problem(trainer)
        if problem is None:
            self.skipped_in_a_row = 0
            return
        where = (
            f"{problem} at step {trainer.step + 1} (epoch {trainer.epoch + 1}, "
            f"batch {trainer.train_loader.position} of {len(trainer.train_loader)})"
        )
        if self.policy == "skip":
            self.skipped_total += 1
            self.skipped_in_a_row += 1
            trainer.logs["train/skipped_steps"] = self.skipped_total
            if self.skipped_in_a_row >= self.max_skips:
                raise NonFiniteError(
                    f"{where}: {self.skipped_in_a_row} updates skipped in a row "
                    f"(train.non_finite.max_skips = {self.max_skips})"
                )
            trainer.skip_step = True
            with torch.no_grad():
                for name, buffer in trainer.model.named_buffers():
                    buffer.copy_(self.buffers[name])
        elif self.policy == "rollback":
            self._rollback(trainer, where)
        else:
            raise NonFiniteError(
                f"{where}; set train.non_finite.policy to skip or rollback "
                "to continue past it, or lower train.lr"
            )

    def _problem(self, trainer: Trainer) -> str | None:
        loss_ok = torch.isfinite(trainer.update_loss[0])
        check = loss_ok
        if not trainer.precision.scaling:
            check = check & torch.isfinite(grad_norm(list(trainer.model.parameters())))
        if trainer.dist.enabled and trainer.ddp is None:
            # gradients not averaged by DDP (DP-SGD sums them in its own step): the processes
            # agree here, or one would skip the step the others wait in
            failed = distributed.all_reduce_tensor((~check).float())
            check = failed == 0
            loss_ok = distributed.all_reduce_tensor((~loss_ok).float()) == 0
        if trainer.to_host(check):  # the one host read of a step
            return None
        if not trainer.to_host(loss_ok):
            return f"non-finite loss ({trainer.loss})"
        return "non-finite gradient"

    def _rollback(self, trainer: Trainer, where: str) -> None:
        directory = next(
            (
                cb.directory
                for cb in trainer.callbacks
                if hasattr(cb, "directory") and hasattr(cb, "keep_last")
            ),
            None,
        )
        if directory is None or not list_checkpoints(directory):
            raise NonFiniteError(f"{where}: no checkpoint to roll back to yet")
        if self.rollbacks >= self.max_rollbacks:
            raise NonFiniteError(
                f"{where}: already rolled back {self.rollbacks} times "
                f"(train.non_finite.max_rollbacks)"
            )
        mine = self.state_dict() | {"rollbacks": self.rollbacks + 1}
        path, tensors, state = load_latest(directory)
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.load_state_dict(tensors, state)
        self.load_state_dict(mine)  # the checkpoint's copy of this callback is older
        trainer.scale_lr(self.lr_factor**self.rollbacks)
        trainer.logs["train/rollbacks"] = self.rollbacks
        raise RestartFromState(f"{where}: rolled back to {path.name}")

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_total": self.skipped_total, "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped_total = state.get("skipped_total", 0)
        self.rollbacks = state.get("rollbacks", 0)
