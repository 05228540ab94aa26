"""The training loop's named events and the callback base class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepline.training.loop import Trainer

EVENTS = (
    "fit_start",
    "epoch_start",
    "batch_start",
    "after_backward",
    "step_end",
    "eval_end",
    "epoch_end",
    "fit_end",
)


class StopTraining(Exception):
    """Raised by a callback to end training cleanly (early stopping, a step budget)."""


class Callback:
    """Override any of the event methods; ``order`` sorts callbacks (lower runs first).

    A callback with state worth resuming returns it from ``state_dict`` (JSON-able).
    """

    order: int = 50

    def fit_start(self, trainer: Trainer) -> None: ...
    def epoch_start(self, trainer: Trainer) -> None: ...
    def batch_start(self, trainer: Trainer) -> None: ...
    def after_backward(self, trainer: Trainer) -> None: ...
    def step_end(self, trainer: Trainer) -> None: ...
    def eval_end(self, trainer: Trainer) -> None: ...
    def epoch_end(self, trainer: Trainer) -> None: ...
    def fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @property
    def name(self) -> str:
        return type(self).__name__


def handlers(callbacks: list[Callback], event: str) -> list[Any]:
    """Bound methods of the callbacks that really handle ``event``, in order."""
    out = []
    for cb in sorted(callbacks, key=lambda c: c.order):
        method = getattr(type(cb), event)
        if method is not getattr(Callback, event):
            out.append(getattr(cb, event))
    return out
