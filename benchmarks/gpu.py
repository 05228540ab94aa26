"""Training on a GPU: MNIST LeNet and the character GPT in each precision, eager or compiled,
with each split kept on the device or copied to it batch by batch.

For every setting, through the real trainer (``run_training``, callbacks and checkpoints on):
time per epoch (the whole epoch, the clock read after ``torch.cuda.synchronize``), training
throughput (images or tokens per second over the training steps of the epochs after the first,
so compilation is left out), and the final test accuracy or validation loss. Then two checks:

- host synchronisations: one MNIST epoch under ``torch.cuda.set_sync_debug_mode("warn")``,
  counting the calls that made the host wait, against the steps and the trainer's own count;
- kill and resume: ``deepline train`` in fp16 (deterministic algorithms,
  ``CUBLAS_WORKSPACE_CONFIG=:4096:8``) killed with SIGKILL inside its second epoch and resumed
  with ``--resume``; its final weights compared bit for bit with an uninterrupted run.

Targets: MNIST LeNet to 99.2% test accuracy in under 10 s of training; the GPT's bf16 tokens
per second at least 3x its fp32 eager ones. The GPT is nanoGPT's GPU recipe for Tiny
Shakespeare (6 layers, 6 heads, 384 wide, context 256, batch 64).

Run: ``python benchmarks/gpu.py --data-dir ../shared/data`` (about 15 minutes on one GPU).
``--quick --device cpu`` runs every part on small data (the digits, a 7 KB text) anywhere.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file

from deepline.config import ExperimentConfig, load_config
from deepline.data import load_data
from deepline.data.meta import DataSplits
from deepline.training.checkpoint import list_checkpoints
from deepline.training.events import Callback
from deepline.training.experiment import run_training

console = Console()
ROOT = Path(__file__).resolve().parents[1]
ROMEO = ROOT / "tests" / "fixtures" / "romeo.txt"
MNIST_TARGET, MNIST_SECONDS, BF16_SPEED_UP = 0.992, 10.0, 3.0
GPT_GPU = {  # nanoGPT's config/train_shakespeare_char.py, in deepline's words
    "model.n_layer": 6,
    "model.n_head": 6,
    "model.n_embd": 384,
    "model.dropout": 0.2,
    "data.context": 256,
    "train.batch_size": 64,
    "train.lr": 1e-3,
    "train.schedule": {"name": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.1},
    "train.eval_batches": 20,
}
QUICK = {
    "mnist": {"data.name": "digits", "model.channels": [8, 16], "model.hidden": 32},
    "gpt": {
        "data.name": "text-file",
        "data.path": str(ROMEO),
        "data.context": 32,
        "model.n_layer": 2,
        "model.n_head": 2,
        "model.n_embd": 32,
        "train.batch_size": 16,
        "train.eval_batches": 2,
    },
}


@dataclass(frozen=True)
class Setting:
    """One way to train: precision (``tf32`` is 32 with TF32 matmuls), compile, data placement."""

    precision: str
    compile: bool
    on_device: bool

    @property
    def label(self) -> str:
        data = "data on device" if self.on_device else "copied per batch"
        return f"{self.precision}, {'compiled' if self.compile else 'eager'}, {data}"

    def overrides(self, device: str) -> dict[str, Any]:
        return {
            "train.device": device,
            "train.precision": "32" if self.precision == "tf32" else self.precision,
            "train.tf32": self.precision == "tf32",
            "train.compile": self.compile,
            "train.data_on_device": self.on_device,
        }


@dataclass
class Result:
    setting: Setting
    epoch_seconds: list[float] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # test accuracy, or val loss, per epoch
    items_per_epoch: int = 0
    error: str = ""

    @property
    def throughput(self) -> float:
        """Items per second over the epochs after the first (all of them when there is one)."""
        steady = self.train_seconds[1:] or self.train_seconds
        return self.items_per_epoch / statistics.median(steady) if steady else 0.0

    def seconds_to(self, target: float) -> float | None:
        """Training time (whole epochs) until the test accuracy first reaches ``target``."""
        total = 0.0
        for seconds, score in zip(self.epoch_seconds, self.scores):
            total += seconds
            if score >= target:
                return total
        return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SyncedClock(Callback):
    """Whole-epoch and training-step times, read after the device has finished its work; the
    score of each epoch is measured after the clock stops."""

    order = 1000  # epoch_end after every other callback (checkpoint, TensorBoard, logs)

    def __init__(self, result: Result, score: Any) -> None:
        self.result, self.score = result, score

    def epoch_start(self, trainer) -> None:  # type: ignore[no-untyped-def]
        synchronize(trainer.device)
        self.t0 = time.perf_counter()

    def step_end(self, trainer) -> None:  # type: ignore[no-untyped-def]
        last = trainer.step % trainer.steps_per_epoch == 0 or trainer.step == trainer.total_steps
        if last:  # the end of this epoch's training steps; validation follows
            synchronize(trainer.device)
            self.result.train_seconds.append(time.perf_counter() - self.t0)

    def epoch_end(self, trainer) -> None:  # type: ignore[no-untyped-def]
        synchronize(trainer.device)
        self.result.epoch_seconds.append(time.perf_counter() - self.t0)
        self.result.scores.append(self.score(trainer))


@torch.no_grad()
def test_accuracy(data: DataSplits):  # type: ignore[no-untyped-def]
    def score(trainer) -> float:  # type: ignore[no-untyped-def]
        model, correct = trainer.model.eval(), 0
        for i in range(0, len(data.test.x), 1000):
            x = data.test.x[i : i + 1000].to(trainer.device, memory_format=trainer.memory_format)
            correct += int((model(x).argmax(1) == data.test.y[i : i + 1000].to(x.device)).sum())
        model.train()
        return correct / len(data.test.x)

    return score


def val_loss(trainer) -> float:  # type: ignore[no-untyped-def]
    return trainer.logs.get("val/loss", float("nan"))


@dataclass
class Workload:
    """A config, its data (loaded once), how to score an epoch and what an item is."""

    name: str
    config: ExperimentConfig
    data: DataSplits
    unit: str

    @property
    def items_per_epoch(self) -> int:
        t = self.config.train
        if self.unit == "tokens":
            return (t.steps_per_epoch or 0) * t.batch_size * (self.config.data.context or 0)
        return len(self.data.train)

    def score(self) -> Any:
        return val_loss if self.unit == "tokens" else test_accuracy(self.data)


def workloads(args: argparse.Namespace) -> list[Workload]:
    data_dir = {"data.data_dir": args.data_dir} if args.data_dir else {}
    mnist = {"train.epochs": args.mnist_epochs, "train.tensorboard": False, **data_dir}
    gpt = {
        "train.max_steps": args.gpt_steps,
        "train.steps_per_epoch": max(1, args.gpt_steps // 5),
        "train.tensorboard": False,
        **(QUICK["gpt"] if args.quick else {**GPT_GPU, **data_dir}),
    }
    if args.quick:
        mnist.update(QUICK["mnist"])
    chosen = []
    for name, config, unit in [
        ("mnist", ("mnist_lenet", mnist), "images"),
        ("gpt", ("shakespeare_char", gpt), "tokens"),
    ]:
        if name in args.only:
            cfg = load_config(ROOT / "configs" / f"{config[0]}.yaml", config[1])
            chosen.append(Workload(name, cfg, load_data(cfg.data), unit))
    return chosen


def train(work: Workload, setting: Setting, device: str) -> Result:
    result = Result(setting, items_per_epoch=work.items_per_epoch)
    cfg = load_config(work.config.model_dump(), setting.overrides(device))
    with tempfile.TemporaryDirectory() as runs:
        try:
            run_training(
                cfg, runs, extra_callbacks=[SyncedClock(result, work.score())], data=work.data
            )
        except Exception as err:  # report the setting as failed and go on with the others
            result.error = f"{type(err).__name__}: {err}"[:200]
    return result


# ---------------------------------------------------------------------- checks
class SyncCounter(Callback):
    """Host waits (from the warnings of CUDA's sync debug mode, or the trainer's own count of
    host reads elsewhere) over the training steps of the first epoch, validation left out."""

    def __init__(self, caught: list[warnings.WarningMessage]) -> None:
        self.caught = caught
        self.result: dict[str, Any] = {}

    def count(self, trainer) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        syncs = sum("synchroniz" in str(w.message) for w in self.caught)
        return syncs, trainer.host_reads

    def epoch_start(self, trainer) -> None:  # type: ignore[no-untyped-def]
        self.start = self.count(trainer)

    def step_end(self, trainer) -> None:  # type: ignore[no-untyped-def]
        if not self.result and trainer.step == trainer.steps_per_epoch:
            syncs, reads = self.count(trainer)
            log_steps = trainer.step // trainer.config.log_every_steps
            self.result = {
                "steps": trainer.step,
                "syncs": syncs - self.start[0],
                "host_reads": reads - self.start[1],
                "allowed": trainer.step + log_steps,  # the non-finite guard, and log steps
            }


def sync_check(work: Workload, device: str) -> dict[str, Any]:
    """Host synchronisations in the training steps of one fp16 epoch, data on the device."""
    cfg = load_config(
        work.config.model_dump(),
        {**Setting("fp16", False, True).overrides(device), "train.epochs": 1},
    )
    cuda = torch.cuda.is_available() and device != "cpu"
    with tempfile.TemporaryDirectory() as runs, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counter = SyncCounter(caught)
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            run_training(cfg, runs, extra_callbacks=[counter], data=work.data)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    waits = counter.result["syncs"] if cuda else counter.result["host_reads"]
    return {**counter.result, "cuda": cuda, "waits": waits}


def train_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepline", "train", *args]


def kill_and_resume(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """fp16 MNIST killed in its second epoch and resumed, against an uninterrupted run."""
    sets = ["train.precision=fp16", "train.deterministic=true", "train.epochs=3"]
    sets += ["train.tensorboard=false", "train.checkpoint.keep_last=3"]
    if args.quick:
        sets += ["data.name=digits", "train.batch_size=32", "model.channels=[8, 16]"]
    if args.data_dir:
        sets.append(f"data.data_dir={args.data_dir}")
    cfg = load_config(ROOT / "configs" / "mnist_lenet.yaml", sets)
    epoch = -(-len(load_data(cfg.data).train) // cfg.train.batch_size)  # steps per epoch
    sets.append(f"train.checkpoint.every_steps={max(1, epoch // 4)}")
    options = ["--device", device, *(a for s in sets for a in ("--set", s))]
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        full_cmd = train_cli("mnist_lenet", "--runs-dir", str(root / "full"), *options)
        subprocess.run(full_cmd, check=True, env=env, capture_output=True)
        proc = subprocess.Popen(
            train_cli("mnist_lenet", "--runs-dir", str(root / "killed"), *options),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        killed_at = 0
        while proc.poll() is None:
            found = list((root / "killed").glob("*/*/checkpoints"))
            saved = [int(p.name.split("-")[1]) for p in list_checkpoints(found[0])] if found else []
            if saved and max(saved) > epoch:
                proc.send_signal(signal.SIGKILL)
                killed_at = max(saved)
                break
            time.sleep(0.005)
        proc.wait()
        if proc.returncode != -signal.SIGKILL:
            return {"identical": False, "why": "the run ended before it could be killed"}
        run = next(p for p in (root / "killed").glob("*/*") if p.is_dir())
        subprocess.run(train_cli("--resume", str(run)), check=True, env=env, capture_output=True)
        full = next(p for p in (root / "full").glob("*/*") if p.is_dir())
        a, b = (final_weights(r) for r in (full, run))
        same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        return {"killed_at": killed_at, "total": 3 * epoch, "identical": same, "why": ""}


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(list_checkpoints(run / "checkpoints")[-1] / "model.safetensors"))


# ---------------------------------------------------------------------- report
def machine(device: str) -> str:
    dev = torch.device(device) if device != "auto" else None
    gpu = torch.cuda.is_available() and (dev is None or dev.type == "cuda")
    name = torch.cuda.get_device_name(dev) if gpu else f"CPU ({os.cpu_count()} cores)"
    cuda = f", CUDA {torch.version.cuda}" if gpu else ""
    return f"{name}; torch {torch.__version__}{cuda}; Python {platform.python_version()}"


def table(work: Workload, results: list[Result]) -> Table:
    score = "val loss" if work.unit == "tokens" else "test accuracy"
    out = Table(title=f"{work.name}: {work.items_per_epoch:,} {work.unit} per epoch")
    for column in ["setting", "first epoch s", "epoch s (median)", f"{work.unit}/s", score]:
        out.add_column(column, justify="left" if column == "setting" else "right")
    if work.unit == "images":
        out.add_column(f"s to {MNIST_TARGET:.1%}", justify="right")
    for r in results:
        if r.error:
            out.add_row(r.setting.label, f"[red]failed: {r.error}[/red]")
            continue
        row = [
            r.setting.label,
            f"{r.epoch_seconds[0]:.2f}",
            f"{statistics.median(r.epoch_seconds[1:] or r.epoch_seconds):.2f}",
            f"{r.throughput:,.0f}",
            f"{r.scores[-1]:.4f}",
        ]
        if work.unit == "images":
            reached = r.seconds_to(MNIST_TARGET)
            row.append("not reached" if reached is None else f"{reached:.1f}")
        out.add_row(*row)
    return out


def verdicts(found: dict[str, list[Result]]) -> list[tuple[str, bool | None, str]]:
    """(target, met, what was measured) for each target whose runs were made."""
    lines: list[tuple[str, bool | None, str]] = []
    ok = {name: [r for r in results if not r.error] for name, results in found.items()}
    if ok.get("mnist"):
        times = [(r.seconds_to(MNIST_TARGET), r.setting.label) for r in ok["mnist"]]
        reached = [(t, label) for t, label in times if t is not None]
        best = min(reached) if reached else None
        lines.append(
            (
                f"MNIST LeNet to {MNIST_TARGET:.1%} in < {MNIST_SECONDS:.0f} s",
                best is not None and best[0] < MNIST_SECONDS,
                f"{best[0]:.1f} s ({best[1]})" if best else "not reached",
            )
        )
    gpt = {
        (r.setting.precision, r.setting.compile, r.setting.on_device): r for r in ok.get("gpt", [])
    }
    base = gpt.get(("32", False, True))
    bf16 = [r for key, r in gpt.items() if key[0] == "bf16"]
    if base and bf16:
        best = max(bf16, key=lambda r: r.throughput)
        ratio = best.throughput / base.throughput
        lines.append(
            (
                f"GPT bf16 tokens/s >= {BF16_SPEED_UP:.0f}x fp32 eager",
                ratio >= BF16_SPEED_UP,
                f"{ratio:.2f}x ({best.setting.label}: {best.throughput:,.0f} vs "
                f"{base.throughput:,.0f} tokens/s)",
            )
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR"))
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (for --quick)")
    parser.add_argument("--only", default="mnist,gpt,sync,resume", help="parts to run")
    parser.add_argument("--precisions", default="32,tf32,bf16,fp16")
    parser.add_argument("--compile", default="off,on", help="off, on, or both (off,on)")
    parser.add_argument("--data", default="device,batch", help="device, batch, or both")
    parser.add_argument("--mnist-epochs", type=int, default=6)
    parser.add_argument("--gpt-steps", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="small data and few steps")
    args = parser.parse_args()
    if args.quick:
        args.mnist_epochs, args.gpt_steps = min(args.mnist_epochs, 2), min(args.gpt_steps, 10)
    settings = [
        Setting(p, c == "on", d == "device")
        for p in args.precisions.split(",")
        for c in args.compile.split(",")
        for d in args.data.split(",")
    ]
    console.rule(f"deepline on {machine(args.device)}")
    found: dict[str, list[Result]] = {}
    chosen = workloads(args)
    for work in chosen:
        found[work.name] = []
        for setting in settings:
            console.print(f"{work.name}: {setting.label}", highlight=False)
            found[work.name].append(train(work, setting, args.device))
        console.print(table(work, found[work.name]))
    checks = Table(title="checks")
    for column in ["check", "met", "measured"]:
        checks.add_column(column)
    for target, met, measured in verdicts(found):
        checks.add_row(target, "yes" if met else "NO", measured)
    mnist = next((w for w in chosen if w.name == "mnist"), None)
    if "sync" in args.only and mnist is not None:
        s = sync_check(mnist, args.device)
        what = "synchronising calls" if s["cuda"] else "host reads (no CUDA sync debug here)"
        checks.add_row(
            "host waits in an epoch's steps (fp16, data on device)",
            "yes" if s["waits"] <= s["allowed"] else "NO",
            f"{s['waits']} {what} in {s['steps']} steps (allowed: one per step, one per log "
            f"step: {s['allowed']}); the trainer counted {s['host_reads']} host reads",
        )
    if "resume" in args.only:
        r = kill_and_resume(args, args.device)
        checks.add_row(
            "fp16 kill and resume, bit for bit",
            "yes" if r["identical"] else "NO",
            r["why"]
            or f"killed after step {r['killed_at']} of {r['total']}; "
            f"final weights {'identical' if r['identical'] else 'DIFFER'}",
        )
    console.print(checks)
    console.print(f"{datetime.date.today()}  {machine(args.device)}", highlight=False)


if __name__ == "__main__":
    main()
