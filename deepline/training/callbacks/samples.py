"""Samples of what the model makes, after each epoch, to ``samples.jsonl`` (shown in the report).

The task makes them (a language model continues a prompt); a fixed seed makes samples of
different epochs comparable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class Samples(Callback):
    """Appends ``{"step", "epoch", "val/loss", **task.sample(model)}`` after each epoch."""

    order = 85
    main_only = True

    def __init__(self, run_dir: Path, seed: int = 0) -> None:
        self.path = run_dir / "samples.jsonl"
        self.seed = seed

    def epoch_end(self, trainer: Trainer) -> None:
        model = trainer.eval_model  # what evaluation and export will use
        sample = trainer.task.sample(model, self.seed)
        model.train()
        record = {
            "step": trainer.step,
            "epoch": trainer.epoch,
            "val/loss": trainer.logs.get("val/loss"),
            **sample,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
