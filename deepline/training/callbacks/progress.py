"""Progress: a Rich bar with loss, metrics and ETA on a terminal; plain log lines otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


SHOWN = (
    "loss",
    "accuracy",
    "robust_accuracy",
    "f1_macro",
    "fd",
    "class_accuracy",
    "mean_return",
    "mase",
)  # the rest is in metrics.jsonl and TensorBoard


def _fmt(logs: dict[str, float], prefix: str) -> str:
    names = [n for n in SHOWN if prefix + n in logs]
    return "  ".join(f"{prefix}{n} {logs[prefix + n]:.4f}" for n in names)


class ProgressBar(Callback):
    order = 80
    main_only = True

    def __init__(self, console: Console | None = None, refresh_steps: int = 10) -> None:
        self.console = console or Console(stderr=True)
        self.refresh_steps = refresh_steps
        self.progress: Progress | None = None

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal

    def fit_start(self, trainer: Trainer) -> None:
        if not self.interactive:
            self.console.print(
                f"training {trainer.total_steps} steps "
                f"({trainer.steps_per_epoch} per epoch), starting at step {trainer.step}"
            )
            return
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(
            "train",
            total=trainer.total_steps,
            completed=trainer.step,
            epoch=trainer.epoch + 1,
            loss=float("nan"),
            metrics="",
        )

    def step_end(self, trainer: Trainer) -> None:
        if self.progress is not None and (
            trainer.step % self.refresh_steps == 0 or trainer.step == trainer.total_steps
        ):
            loss = trainer.logs.get("train/loss", float("nan"))  # as of the last log step
            self.progress.update(
                self.task_id, completed=trainer.step, epoch=trainer.epoch + 1, loss=loss
            )

    def epoch_end(self, trainer: Trainer) -> None:
        spent = trainer.logs.get("privacy/epsilon")
        line = (
            f"epoch {trainer.epoch:>3}  step {trainer.step:>6}  "
            f"train/loss {trainer.logs.get('train/loss_epoch', float('nan')):.4f}  "
            f"{_fmt(trainer.logs, 'val/')}"
            + (f"  epsilon {spent:.3f}" if spent is not None else "")
            + f"  [{trainer.elapsed:.1f}s]"
        )
        if self.progress is not None:
            self.progress.update(self.task_id, metrics=_fmt(trainer.logs, "val/"))
            self.progress.console.print(line, highlight=False)
        else:
            self.console.print(line, highlight=False)

    def fit_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, completed=trainer.step)
            self.progress.stop()
        if trainer.stop_reason:
            self.console.print(f"stopped: {trainer.stop_reason}", highlight=False)
