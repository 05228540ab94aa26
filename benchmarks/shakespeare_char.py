"""Character-level Shakespeare: nanoGPT's CPU recipe vs deepline's best CPU configuration.

(a) the recipe from nanoGPT's README, run in deepline: char level, 4 layers, 4 heads, 128
    embedding, context 64, batch 12, 2000 iterations, lr 1e-3 (cosine to 1e-4, 100 warm-up
    steps, AdamW betas (0.9, 0.99), weight decay 0.1, clip 1.0 as its shakespeare_char config),
    no dropout;
(b) ``configs/shakespeare_char.yaml``, deepline's best configuration for this machine.
Both validate on the same 1,280 fixed windows of the validation text every ``--eval-every``
steps; time is the training wall time (start-up and validation left out). Prints validation
loss against wall time, the time each reaches a loss of 1.88, and a generated sample.
Run: ``python benchmarks/shakespeare_char.py --data-dir ../shared/data``.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

from rich.console import Console
from rich.table import Table

from deepline.config import load_config
from deepline.training.events import Callback
from deepline.training.experiment import run_training

console = Console()
TARGET = 1.88
RECIPE = {
    "train.max_steps": 2000,
    "train.batch_size": 12,
    "train.lr": 1e-3,
    "train.schedule": {"name": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.1},
    "model.n_layer": 4,
    "model.n_head": 4,
    "model.n_embd": 128,
    "model.dropout": 0.0,
    "model.rotary": False,
    "data.context": 64,
}


class TrainingClock(Callback):
    """(training seconds, step, val loss) at each validation; validation time is left out,
    so runs that validate at different steps compare fairly."""

    order = 0

    def __init__(self) -> None:
        self.points: list[tuple[float, int, float]] = []
        self.eval_seconds = 0.0
        self.last_step = 0.0

    def step_end(self, trainer) -> None:  # type: ignore[no-untyped-def]
        self.last_step = time.perf_counter()

    def eval_end(self, trainer) -> None:  # type: ignore[no-untyped-def]
        now = time.perf_counter()
        self.eval_seconds += now - self.last_step
        self.points.append(
            (trainer.elapsed - self.eval_seconds, trainer.step, trainer.logs["val/loss"])
        )


def curve(name: str, overrides: dict, data_dir: str, eval_every: int) -> dict:
    cfg = load_config(
        "shakespeare_char",
        {
            **overrides,
            "name": name,
            "data.data_dir": data_dir,
            "task.sample_tokens": 0,
            "train.steps_per_epoch": eval_every,
            "train.eval_batches": 20,
            "eval.batch_size": 64,
            "train.tensorboard": False,
        },
    )
    clock = TrainingClock()
    with tempfile.TemporaryDirectory() as runs:
        exp = run_training(cfg, runs, extra_callbacks=[clock])
        points = clock.points
        sample = exp.task.sample(exp.model, "ROMEO:", 300, seed=0)  # type: ignore[attr-defined]
    return {"name": name, "points": points, "sample": sample}


def time_to(points: list[tuple[float, int, float]], target: float) -> float:
    """Wall time at which validation loss first reaches ``target`` (linear in between)."""
    previous = None
    for t, _, loss in points:
        if loss <= target:
            if previous is None:
                return t
            t0, l0 = previous
            return t0 + (t - t0) * (l0 - target) / (l0 - loss)
        previous = (t, loss)
    return math.inf


def loss_at(points: list[tuple[float, int, float]], when: float) -> float:
    """Validation loss of the last evaluation at or before ``when`` seconds."""
    done = [loss for t, _, loss in points if t <= when]
    return done[-1] if done else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args()
    recipe = curve("nanogpt-recipe", RECIPE, args.data_dir, args.eval_every)
    best = curve("deepline-best", {}, args.data_dir, args.eval_every)
    for run in (recipe, best):
        table = Table(title=f"{run['name']}: validation loss against wall time")
        for column in ("step", "seconds", "val loss"):
            table.add_column(column, justify="right")
        for t, step, loss in run["points"]:
            table.add_row(str(step), f"{t:.0f}", f"{loss:.4f}")
        console.print(table)
    a, b = time_to(recipe["points"], TARGET), time_to(best["points"], TARGET)
    end = recipe["points"][-1][0]
    console.print(
        f"time to val loss {TARGET}: recipe {a:.0f} s, deepline best {b:.0f} s, "
        f"ratio {b / a:.2f}x (target <= 0.7x)"
    )
    console.print(
        f"at the recipe's final time ({end:.0f} s): recipe {recipe['points'][-1][2]:.4f}, "
        f"deepline best {loss_at(best['points'], end):.4f}"
    )
    console.print(
        f"final: recipe {recipe['points'][-1][2]:.4f} after {end:.0f} s; deepline best "
        f"{best['points'][-1][2]:.4f} after {best['points'][-1][0]:.0f} s"
    )
    console.rule("sample from deepline-best (seed 0, temperature 0.8)")
    console.print(best["sample"], highlight=False, markup=False)


if __name__ == "__main__":
    main()
