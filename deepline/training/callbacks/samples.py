"""Language models: write a text sample after each epoch to ``samples.jsonl`` (and the terminal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class TextSamples(Callback):
    """Samples ``tokens`` tokens after ``prompt`` with a fixed seed, so samples compare."""

    order = 85
    main_only = True

    def __init__(self, run_dir: Path, prompt: str, tokens: int, seed: int = 0) -> None:
        self.path = run_dir / "samples.jsonl"
        self.prompt, self.tokens, self.seed = prompt, tokens, seed

    def epoch_end(self, trainer: Trainer) -> None:
        text = trainer.task.sample(trainer.model, self.prompt, self.tokens, self.seed)  # type: ignore[attr-defined]
        trainer.model.train()
        record = {
            "step": trainer.step,
            "epoch": trainer.epoch,
            "val/loss": trainer.logs.get("val/loss"),
            "text": text,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
