"""Append metrics to ``metrics.jsonl`` and keep ``status.json`` current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer

EPOCH_PREFIXES = ("val/", "privacy/")  # logged once per epoch (validation, epsilon spent)


class MetricsLog(Callback):
    """One JSON line every ``every_steps`` steps and one per epoch; the run's status file."""

    order = 10  # first: later callbacks may read what it computed
    main_only = True

    def __init__(self, run_dir: Path, every_steps: int = 50) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.status_path = run_dir / "status.json"
        self.every_steps = every_steps

    def fit_start(self, trainer: Trainer) -> None:
        self._truncate_after(trainer.step)  # a resumed run rewrites what came after its checkpoint
        self.write_status(trainer, "running")

    def step_end(self, trainer: Trainer) -> None:
        # the trainer reduces the loss over processes at its log steps (train.log_every_steps)
        if trainer.step % self.every_steps == 0 and "train/loss" in trainer.logs:
            # train/loss and what training methods measure at this step (pseudo-labels, ...)
            step_logs = {k: v for k, v in trainer.logs.items()
                         if k.startswith("train/") and k != "train/loss_epoch"}  # fmt: skip
            self._append(trainer, {**step_logs, "lr": trainer.lr})

    def epoch_end(self, trainer: Trainer) -> None:
        epoch_logs = {k: v for k, v in trainer.logs.items() if k.startswith(EPOCH_PREFIXES)}
        if "train/loss_epoch" in trainer.logs:  # a model fitted in closed form has none
            epoch_logs["train/loss_epoch"] = trainer.logs["train/loss_epoch"]
        self._append(trainer, epoch_logs, epoch=trainer.epoch - 1)
        self.write_status(trainer, "running")

    def fit_end(self, trainer: Trainer) -> None:
        status = "stopped" if trainer.stop_reason else "completed"
        self.write_status(trainer, status)

    def write_status(self, trainer: Trainer, status: str, **extra: Any) -> None:
        record = {
            "status": status,
            "epochs": trainer.epoch,
            "steps": trainer.step,
            "total_steps": trainer.total_steps,
            "wall_time_s": round(trainer.elapsed, 3),
            "last": {k: v for k, v in trainer.logs.items() if k.startswith(EPOCH_PREFIXES)},
            "stopped_reason": trainer.stop_reason,
            "device": str(trainer.device),
            "gradient_all_reduces": trainer.grad_syncs,
            **extra,
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(self.status_path)

    def _append(self, trainer: Trainer, values: dict[str, Any], epoch: int | None = None) -> None:
        record = {
            "step": trainer.step,
            "epoch": trainer.epoch if epoch is None else epoch,
            "time": round(trainer.elapsed, 3),
            **values,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [ln for ln in lines if ln.strip() and _step(ln) <= step]
        self.path.write_text("".join(ln + "\n" for ln in kept))


def _step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError):
        return 1 << 62
