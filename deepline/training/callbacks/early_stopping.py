"""Stop when the monitored validation metric stops improving, or reaches a target."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepline.training.events import Callback, StopTraining

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


def is_better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` improves on ``best`` by more than ``min_delta`` ('min' or 'max')."""
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    order = 95  # after checkpointing, so the last epoch is saved before stopping

    def __init__(
        self,
        monitor: str,
        mode: str,
        patience: int,
        min_delta: float = 0.0,
        target: float | None = None,
    ) -> None:
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta, self.target = patience, min_delta, target
        self.best: float | None = None
        self.bad_epochs = 0

    def epoch_end(self, trainer: Trainer) -> None:
        value = trainer.logs.get(self.monitor)
        if value is None:
            return
        if self.target is not None and (
            value >= self.target if self.mode == "max" else value <= self.target
        ):
            raise StopTraining(f"{self.monitor} {value:.4g} reached its target {self.target:g}")
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            raise StopTraining(
                f"early stopping: {self.monitor} did not improve on {self.best:.4g} "
                f"for {self.patience} epochs"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.bad_epochs = state.get("bad_epochs", 0)
