"""Distributed data parallel on this machine: images/s for 1 vs 2 processes, and the cost of
saving and resuming a full ResNet checkpoint.

Each configuration trains MNIST with ``configs/mnist_lenet.yaml`` (global batch 128) for a fixed
number of steps through ``deepline train --nproc N`` (real torchrun, gloo); throughput is taken
from the metrics log between two logged steps, so start-up and data loading are excluded.
Run: ``python benchmarks/ddp.py --data-dir ../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

console = Console()


def throughput(nproc: int, data_dir: str, steps: int, threads: int) -> float:
    """Training images per second between logged steps 25 and ``steps``."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        args = [
            "train",
            "mnist_lenet",
            "--data-dir",
            data_dir,
            "--run-dir",
            str(run),
            "--set",
            f"train.max_steps={steps}",
            "--set",
            "train.epochs=null",
            "--set",
            "train.log_every_steps=25",
            "--set",
            "train.tensorboard=false",
        ]
        if nproc > 1:
            args += ["--nproc", str(nproc)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(
            [sys.executable, "-m", "deepline", *args], check=True, env=env, capture_output=True
        )
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        logged = {r["step"]: r["time"] for r in lines if "train/loss" in r}
        first = min(logged)
        return (steps - first) * 128 / (logged[steps] - logged[first])


def checkpoint_costs(blocks: list[int], width: int) -> dict[str, float]:
    """Seconds to save and to load + restore a full training state of a ResNet."""
    from deepline.config import load_config
    from deepline.data import DataSplits
    from deepline.data.meta import DataMeta, Split
    from deepline.training.checkpoint import load_latest, save_checkpoint
    from deepline.training.experiment import build_experiment

    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    meta = DataMeta(
        name="random",
        kind="image",
        input_shape=(3, 32, 32),
        classes=[str(i) for i in range(10)],
        input_scale=1.0,
        mean=[0.0] * 3,
        std=[1.0] * 3,
        fingerprint="",
        sizes={"train": 64, "val": 0, "test": 0},
        files=[],
    )
    data = DataSplits(Split(x, y), Split(x[:0], y[:0]), Split(x[:0], y[:0]), meta)
    cfg = load_config(
        {
            "model": {"name": "resnet", "blocks": blocks, "width": width},
            "train": {"max_steps": 1, "batch_size": 64, "tensorboard": False},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        exp = build_experiment(cfg, Path(tmp), data=data)
        exp.trainer.fit()  # one step, so the optimizer has its state
        tensors, state = exp.trainer.state_dict()
        t0 = time.perf_counter()
        path = save_checkpoint(Path(tmp) / "ck", 1, tensors, state)
        save = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in path.iterdir())
        t0 = time.perf_counter()
        _, loaded, values = load_latest(Path(tmp) / "ck")
        exp.trainer.load_state_dict(loaded, values)
        load = time.perf_counter() - t0
    params = sum(p.numel() for p in exp.model.parameters())
    return {"params": params, "megabytes": size / 1e6, "save_s": save, "load_s": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    table = Table(title=f"DDP throughput, MNIST LeNet, global batch 128, {cores} cores")
    for column in ("processes", "threads each", "images/s", "vs 1 process"):
        table.add_column(column, justify="right")
    base = None
    for nproc, threads in ((1, cores), (1, 1), (2, max(1, cores // 2))):
        rate = throughput(nproc, args.data_dir, args.steps, threads)
        base = base or rate
        table.add_row(str(nproc), str(threads), f"{rate:.0f}", f"{rate / base:.2f}x")
    console.print(table)
    table = Table(title="full-state checkpoint (model + AdamW state + RNG), ResNet on 3x32x32")
    for column in ("blocks", "width", "parameters", "MB", "save s", "load+restore s"):
        table.add_column(column, justify="right")
    for blocks, width in (([2, 2, 2], 32), ([2, 2, 2, 2], 64)):
        c = checkpoint_costs(blocks, width)
        table.add_row(
            str(blocks),
            str(width),
            f"{c['params'] / 1e6:.2f}M",
            f"{c['megabytes']:.1f}",
            f"{c['save_s']:.3f}",
            f"{c['load_s']:.3f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
