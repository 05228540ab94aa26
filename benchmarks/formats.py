"""Export formats side by side: eager PyTorch vs ONNX Runtime vs TorchScript vs int8.

For LeNet (MNIST), ResNet (Fashion-MNIST) and the Transformer (sequential MNIST), each trained
briefly with its packaged config (``--steps``), exported with every format through
``deepline export`` (which checks each against eager fp32 on real test inputs), then timed at
batch 1 and batch 64 with the same thread count for every engine, in a fresh process per model.
Reports latency, the speed-up over eager, file sizes, and int8's accuracy change as
``export.json`` records it.

Run: ``python benchmarks/formats.py --data-dir ../shared/data`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from deepline.config import load_config
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.training.experiment import run_training

console = Console(width=None if Console().is_terminal else 140)
MODELS = {"LeNet": "mnist_lenet", "ResNet": "fashion_resnet", "Transformer": "smnist_transformer"}
ENGINES = ("torch", "onnx", "torchscript", "int8")


def train_and_export(config_name: str, steps: int, data_dir: str, root: Path) -> Path:
    cfg = load_config(
        config_name,
        [
            f"train.max_steps={steps}",
            "train.epochs=null",
            "train.tensorboard=false",
            f"data.data_dir={data_dir}",
            "train.log_every_steps=100000",
        ],
    )
    run_dir = run_training(cfg, root, console=Console(quiet=True)).run_dir
    export_run(run_dir, formats=["onnx", "torchscript", "int8"])
    return run_dir


def latency_ms(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, seconds: float) -> float:
    """Median milliseconds per call, after a warm-up, over at least ``seconds``."""
    for _ in range(3):
        run(batch)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 10:
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def time_engines(run_dir: Path, threads: int, seconds: float) -> dict[str, float]:
    """Latency of every engine at batch 1 and 64, "engine/batch" -> ms (one process per model,
    started fresh: nothing left from training or export competes for the cores)."""
    torch.set_num_threads(threads)
    bundle = run_dir / "bundle"
    examples = Predictor(bundle, "torch").bundle.examples()["test_x"].numpy()
    batches = {1: examples[:1], 64: np.concatenate([examples] * 2)[:64]}
    latency = {}
    for engine in ENGINES:
        predictor = Predictor(bundle, engine, threads=threads)
        for size, batch in batches.items():
            latency[f"{engine}/{size}"] = latency_ms(predictor.run, batch, seconds)
        del predictor  # its runtime's threads go before the next engine is timed
    return latency


def measure(run_dir: Path, threads: int, seconds: float) -> dict[str, Any]:
    export = json.loads((run_dir / "export.json").read_text())
    command = [
        sys.executable,
        __file__,
        "--time",
        str(run_dir),
        "--threads",
        str(threads),
        "--seconds",
        str(seconds),
    ]
    timed = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    latency = {(key.split("/")[0], int(key.split("/")[1])): ms for key, ms in timed.items()}
    return {"export": export["formats"], "latency": latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--steps", type=int, default=300, help="training steps per model")
    parser.add_argument("--threads", type=int, default=2, help="threads of every engine")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--models", default=",".join(MODELS), help="LeNet,ResNet,Transformer")
    parser.add_argument("--time", type=Path, help=argparse.SUPPRESS)  # (the timing subprocess)
    args = parser.parse_args()
    if args.time:
        print(json.dumps(time_engines(args.time, args.threads, args.seconds)))
        return
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            console.print(f"[bold]{name}[/]: training {args.steps} steps, exporting 4 formats")
            run_dir = train_and_export(MODELS[name], args.steps, args.data_dir, Path(tmp))
            results[name] = measure(run_dir, args.threads, args.seconds)
    speed = Table(title=f"latency (ms, median) with {args.threads} threads; speed-up over eager")
    speed.add_column("model")
    speed.add_column("batch", justify="right")
    for engine in ENGINES:
        speed.add_column(engine, justify="right")
    sizes = Table(title="file sizes and checks at export")
    for column in (
        "model",
        "fp32 (safetensors)",
        "onnx",
        "torchscript",
        "int8",
        "int8 method",
        "max |diff| onnx / ts",
        "int8 metric fp32 -> int8",
    ):
        sizes.add_column(column, justify="left" if column in ("model", "int8 method") else "right")
    for name, r in results.items():
        for size in (1, 64):
            eager = r["latency"][("torch", size)]
            cells = [
                f"{r['latency'][(e, size)]:.3f}"
                + ("" if e == "torch" else f" ({eager / r['latency'][(e, size)]:.2f}x)")
                for e in ENGINES
            ]
            speed.add_row(name, str(size), *cells)
        f = r["export"]
        int8 = f["int8"]
        sizes.add_row(
            name,
            _kib(f["safetensors"]["bytes"]),
            _kib(f["onnx"]["bytes"]),
            _kib(f["torchscript"]["bytes"]),
            f"{_kib(int8['bytes'])} ({int8['size_ratio']:.2f}x of fp32)",
            int8.get("runtime", ""),
            f"{f['onnx']['max_abs_diff']:.1e} / {f['torchscript']['max_abs_diff']:.1e}",
            f"{int8['metric']} {int8['fp32']:.4f} -> {int8['int8']:.4f} ({int8['change']:+.4f})",
        )
    console.print(speed)
    console.print(sizes)
    console.print(
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}"
    )


def _kib(n: int) -> str:
    return f"{n / 1024:.0f} KiB"


if __name__ == "__main__":
    main()
