"""Full-state checkpoints at epoch ends (and every N steps), keeping the last k and the best."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepline.training.callbacks.early_stopping import is_better
from deepline.training.checkpoint import checkpoint_name, prune_checkpoints, save_checkpoint
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class Checkpointing(Callback):
    """Runs on every process (the state gathers each one's RNG); rank 0 alone writes."""

    order = 90  # after the callbacks that update metrics and state

    def __init__(
        self,
        directory: Path,
        every_steps: int | None = None,
        keep_last: int = 2,
        monitor: str = "val/loss",
        mode: str = "min",
    ) -> None:
        self.directory = directory
        self.every_steps = every_steps
        self.keep_last = keep_last
        self.monitor, self.mode = monitor, mode
        self.best_value: float | None = None
        self.best_path: str | None = None
        self.last_saved_step = -1

    def step_end(self, trainer: Trainer) -> None:
        if self.every_steps and trainer.step % self.every_steps == 0:
            self.save(trainer, monitor_value=None)

    def epoch_end(self, trainer: Trainer) -> None:
        self.save(trainer, monitor_value=trainer.logs.get(self.monitor))

    def fit_end(self, trainer: Trainer) -> None:
        if self.last_saved_step != trainer.step:
            self.save(trainer, monitor_value=trainer.logs.get(self.monitor))

    def save(self, trainer: Trainer, monitor_value: float | None) -> Path:
        improved = monitor_value is not None and is_better(
            monitor_value, self.best_value, self.mode
        )
        if improved:  # recorded before saving, so the checkpoint carries its own best record
            self.best_value = monitor_value
            self.best_path = checkpoint_name(trainer.step)
        tensors, state = trainer.state_dict()  # on every process: it gathers their RNG states
        self.last_saved_step = trainer.step
        if not trainer.dist.is_main:
            return self.directory / checkpoint_name(trainer.step)
        state["monitor"] = self.monitor
        state["monitor_value"] = monitor_value
        path = save_checkpoint(self.directory, trainer.step, tensors, state)
        keep = self.directory / self.best_path if self.best_path else None
        prune_checkpoints(self.directory, self.keep_last, keep=keep)
        return path

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_path": self.best_path}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value = state.get("best_value")
        self.best_path = state.get("best_path")
