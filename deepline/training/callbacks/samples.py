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
    """Appends ``{"step", "epoch", "metric", "value", **task.sample(model)}`` after each epoch
    (``metric``: the one that picks the best checkpoint, ``value`` its validation value)."""

    order = 85
    main_only = True

    def __init__(self, run_dir: Path, seed: int = 0, metric: str = "val/loss") -> None:
        self.path = run_dir / "samples.jsonl"
        self.seed, self.metric = seed, metric

    def epoch_end(self, trainer: Trainer) -> None:
        model = trainer.eval_model  # what evaluation and export will use
        sample = trainer.task.sample(model, self.seed)
        model.train()
        record = {
            "step": trainer.step,
            "epoch": trainer.epoch,
            "metric": self.metric,
            "value": trainer.logs.get(self.metric),
            **sample,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
