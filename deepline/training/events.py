"""The training loop's named events and the callback base class.

``batch_start`` fires for every batch (micro-batches of an accumulation included);
``after_backward`` once per optimizer step, after its last batch's backward, when the
gradients are complete; ``step_end`` after the optimizer step.
"""

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


class RestartFromState(Exception):
    """Raised by a callback that restored an earlier trainer state (a rollback): the loop
    continues from that state, not from the batch it was on."""


class Callback:
    """Override any of the event methods; ``order`` sorts callbacks (lower runs first).

    A callback with state worth resuming returns it from ``state_dict`` (JSON-able).
    ``main_only`` callbacks (logging, progress, files) run on rank 0 of a distributed run only.
    """

    order: int = 50
    main_only: bool = False

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
