"""MNIST, side by side in one process: deepline's trainer, a hand-written loop, PyTorch's example.

(a) deepline: ``configs/mnist_lenet.yaml`` through the real trainer (callbacks, checkpoints,
    TensorBoard, metrics log).
(b) plain: a hand-written PyTorch loop with the same model, data, augmentation, batch size,
    optimizer and schedule, validating on the same split each epoch; nothing else.
(c) reference: the recipe of PyTorch's official MNIST example (two 3x3 convs with 32 and 64
    channels, max-pool, dropout 0.25, a 128-unit layer, dropout 0.5; Adadelta lr 1.0, StepLR
    gamma 0.7, batch 64, 14 epochs), written from that description.

Per epoch: the whole epoch as each runs it, from its start to the end of its last piece of
work (for deepline: training, validation and every ``epoch_end`` callback: checkpoint,
TensorBoard, metrics log); test accuracy is measured outside the clock.

``--timing-reps N`` (default 5) first times (a) and (b) for ``--timing-epochs`` epochs each, N
times, alternating which goes first, and reports the median of their per-epoch ratios with its
spread; then (a), (b) and (c) run their full recipes for the accuracy curves.
Run: ``python benchmarks/mnist.py --data-dir ../shared/data`` (about 30 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from deepline.config import load_config
from deepline.data import load_data
from deepline.data.loaders import batch_seed
from deepline.data.transforms import BatchAugment
from deepline.training.events import Callback
from deepline.training.experiment import run_training
from deepline.training.optim import LRSchedule, build_optimizer

console = Console()


@dataclass
class Curve:
    """Cumulative training time and test accuracy after each epoch."""

    name: str
    epoch_times: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    def add(self, seconds: float, accuracy: float) -> None:
        self.epoch_times.append(seconds)
        self.test_accuracy.append(accuracy)
        console.print(
            f"  {self.name}: epoch {len(self.epoch_times)}  {seconds:.1f}s  "
            f"test accuracy {accuracy:.4f}",
            highlight=False,
        )

    @property
    def per_epoch(self) -> float:
        return sum(self.epoch_times) / len(self.epoch_times)

    def time_to(self, target: float) -> float:
        total = 0.0
        for seconds, acc in zip(self.epoch_times, self.test_accuracy):
            total += seconds
            if acc >= target:
                return total
        return math.inf


@torch.no_grad()
def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, layout=torch.contiguous_format
) -> float:
    model.eval()
    correct = sum(
        int(
            (
                model(x[i : i + 1000].contiguous(memory_format=layout)).argmax(1) == y[i : i + 1000]
            ).sum()
        )
        for i in range(0, len(x), 1000)
    )
    model.train()
    return correct / len(x)


# ------------------------------------------------------------------------- (a) deepline
class EpochStart(Callback):
    """Starts the clock before any other callback's ``epoch_start``."""

    order = -1000

    def epoch_start(self, trainer) -> None:  # type: ignore[no-untyped-def]
        self.t0 = time.perf_counter()


class EpochEnd(Callback):
    """Stops the clock after every other callback's ``epoch_end`` (checkpoint, TensorBoard,
    metrics log), then measures test accuracy off the clock."""

    order = 1000

    def __init__(
        self, start: EpochStart, curve: Curve, test_x: torch.Tensor, test_y: torch.Tensor
    ) -> None:
        self.start, self.curve, self.test_x, self.test_y = start, curve, test_x, test_y

    def epoch_end(self, trainer) -> None:  # type: ignore[no-untyped-def]
        seconds = time.perf_counter() - self.start.t0
        self.curve.add(
            seconds, accuracy(trainer.model, self.test_x, self.test_y, torch.channels_last)
        )


def run_deepline(config: str, data_dir: str, epochs: int | None) -> Curve:
    overrides = {"data.data_dir": data_dir, **({"train.epochs": epochs} if epochs else {})}
    cfg = load_config(config, overrides)
    data = load_data(cfg.data)
    curve = Curve("deepline")
    start = EpochStart()
    with tempfile.TemporaryDirectory() as runs:
        clock = [start, EpochEnd(start, curve, data.test.x, data.test.y)]
        run_training(cfg, runs, extra_callbacks=clock, data=data)
    return curve


# ------------------------------------------------------------------------- (b) plain loop
def run_plain(config: str, data_dir: str, epochs: int | None) -> Curve:
    from deepline.models.lenet import LeNet

    cfg = load_config(config, {"data.data_dir": data_dir})
    t = cfg.train
    epochs = epochs or t.epochs or 1
    data = load_data(cfg.data)
    torch.manual_seed(cfg.seed)
    model = LeNet(1, 10, (28, 28), **cfg.model.kwargs()).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, t)
    steps_per_epoch = math.ceil(len(data.train) / t.batch_size)
    schedule = LRSchedule(t.schedule, epochs * steps_per_epoch, steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    fill = [-m / s for m, s in zip(data.meta.mean, data.meta.std)]
    augment = BatchAugment(cfg.data.augment, fill=fill)
    curve = Curve("plain")
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(order), t.batch_size):
            idx = order[i : i + t.batch_size]
            # the same random numbers as the trainer's loader: a generator seeded per batch
            generator = torch.Generator().manual_seed(
                batch_seed(cfg.seed, epoch, i // t.batch_size, 0)
            )
            x = augment(data.train.x[idx], generator).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), data.train.y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        accuracy(model, data.val.x, data.val.y, torch.channels_last)  # the same validation pass
        curve.add(
            time.perf_counter() - t0, accuracy(model, data.test.x, data.test.y, torch.channels_last)
        )
    return curve


# ------------------------------------------------------------------------- (c) reference
class ExampleNet(nn.Module):
    """The network of PyTorch's MNIST example, from its description."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(torch.flatten(F.max_pool2d(x, 2), 1))
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def run_reference(data_dir: str, epochs: int, stop_at: float | None) -> Curve:
    cfg = load_config({"data": {"name": "mnist", "data_dir": data_dir, "val_fraction": 0.0}})
    data = load_data(cfg.data)  # all 60,000 training images, normalised (0.1307, 0.3081)
    torch.manual_seed(1)
    model = ExampleNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    curve = Curve("pytorch-example")
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = F.nll_loss(model(data.train.x[idx]), data.train.y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        curve.add(time.perf_counter() - t0, accuracy(model, data.test.x, data.test.y))
        if stop_at is not None and curve.test_accuracy[-1] >= stop_at:
            break
    return curve


# ------------------------------------------------------------------------- timing
def run_timing(config: str, data_dir: str, reps: int, epochs: int) -> list[float]:
    """(a) / (b) seconds per epoch, ``reps`` times, alternating which runs first."""
    ratios = []
    for rep in range(reps):
        order = ("a", "b") if rep % 2 == 0 else ("b", "a")
        per_epoch = {}
        for key in order:
            console.rule(f"timing {rep + 1}/{reps}: ({key})")
            run = run_deepline if key == "a" else run_plain
            per_epoch[key] = run(config, data_dir, epochs).per_epoch
        ratios.append(per_epoch["a"] / per_epoch["b"])
        console.print(
            f"  rep {rep + 1}: (a) {per_epoch['a']:.2f} s/epoch, (b) {per_epoch['b']:.2f} "
            f"s/epoch, ratio {ratios[-1]:.3f}",
            highlight=False,
        )
    return ratios


def timing_report(ratios: list[float]) -> None:
    median = statistics.median(ratios)
    spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
    console.print(
        f"deepline s/epoch / plain s/epoch over {len(ratios)} alternating reps: median "
        f"{median:.3f}x, spread {spread} (target <= 1.03x); each: "
        + ", ".join(f"{r:.3f}" for r in ratios)
    )


# ------------------------------------------------------------------------- report
def ratio(slow: Curve, fast: Curve, target: float) -> str:
    """How many times sooner ``fast`` reaches ``target``; a lower bound if ``slow`` never does."""
    a, b = slow.time_to(target), fast.time_to(target)
    if not math.isfinite(b):
        return "- (deepline did not reach it)"
    if not math.isfinite(a):
        return f">= {sum(slow.epoch_times) / b:.2f}x ({slow.name} did not reach it)"
    return f"{a / b:.2f}x"


def seconds(value: float) -> str:
    return f"{value:.0f}s" if math.isfinite(value) else "not reached"


def report(curves: list[Curve]) -> None:
    table = Table(
        title=f"MNIST on {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    for column in (
        "run",
        "epochs",
        "s/epoch",
        "to 99.0%",
        "to 99.2%",
        "best test acc",
        "final test acc",
    ):
        table.add_column(column, justify="right")
    for c in curves:
        table.add_row(
            c.name,
            str(len(c.epoch_times)),
            f"{c.per_epoch:.1f}",
            seconds(c.time_to(0.99)),
            seconds(c.time_to(0.992)),
            f"{max(c.test_accuracy):.4f}",
            f"{c.test_accuracy[-1]:.4f}",
        )
    console.print(table)
    by = {c.name: c for c in curves}
    a, b, c = by.get("deepline"), by.get("plain"), by.get("pytorch-example")
    if a and b:
        console.print(
            f"deepline s/epoch / plain s/epoch, this run = {a.per_epoch / b.per_epoch:.3f}x"
        )
    if a and c:
        for target in (0.99, 0.992):
            console.print(
                f"pytorch-example time to {target:.1%} / deepline time to {target:.1%} = "
                f"{ratio(c, a, target)} (target at 99.2%: >= 3x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--config", default="mnist_lenet")
    parser.add_argument("--epochs", type=int, default=None, help="for (a) and (b)")
    parser.add_argument("--reference-epochs", type=int, default=14)
    parser.add_argument(
        "--reference-stop-at",
        type=float,
        default=None,
        help="stop (c) once its test accuracy reaches this",
    )
    parser.add_argument("--only", default="a,b,c", help="which of a,b,c to run in full")
    parser.add_argument("--timing-reps", type=int, default=5, help="0: no timing reps")
    parser.add_argument("--timing-epochs", type=int, default=2, help="epochs per timing run")
    args = parser.parse_args()
    ratios = (
        run_timing(args.config, args.data_dir, args.timing_reps, args.timing_epochs)
        if args.timing_reps
        else []
    )
    runners: dict[str, Callable[[], Curve]] = {
        "a": lambda: run_deepline(args.config, args.data_dir, args.epochs),
        "b": lambda: run_plain(args.config, args.data_dir, args.epochs),
        "c": lambda: run_reference(args.data_dir, args.reference_epochs, args.reference_stop_at),
    }
    curves = []
    for key in [k for k in args.only.split(",") if k]:
        console.rule(f"({key})")
        curves.append(runners[key]())
    if curves:
        report(curves)
    if ratios:
        timing_report(ratios)


if __name__ == "__main__":
    main()
