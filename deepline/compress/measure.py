"""What a compression stage costs and saves: its test score, its parameters (and how many are
not zero), its bundle's bytes (and gzip's), ONNX Runtime's latency at batch 1 and 64, and the
same model stored compactly (the ``compact`` format: sparse, shared values, LZMA) and in int8
(ONNX Runtime's static quantization), each with its own test score."""

from __future__ import annotations

import contextlib
import gzip
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepline.deploy.export import export_trained
from deepline.deploy.formats.base import on_tensors
from deepline.deploy.predictor import Predictor
from deepline.errors import ExportError
from deepline.evaluate.evaluate import evaluate_trained, score
from deepline.evaluate.loading import load_trained

BATCHES = (1, 64)


def latency_ms(predictor: Predictor, batch: np.ndarray, repeats: int) -> float:
    """Median milliseconds of ``predictor.run`` on ``batch`` (after two warm-up runs)."""
    for _ in range(2):
        predictor.run(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.run(batch)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(run_dir: Path, data_dir: str | None = None) -> dict[str, Any]:
    """Score, size and speed of a run's best checkpoint, exported to its bundle (ONNX)."""
    run = load_trained(run_dir, data_dir=data_dir)
    metric = run.task.monitor_default()[0].removeprefix("val/")
    evaluation = evaluate_trained(run, "test", keep_mistakes=0)
    params = [p.detach() for p in run.model.parameters()]
    with contextlib.suppress(ExportError):  # a check failed: measured all the same below
        export_trained(run, formats=["onnx", "compact", "int8"])
    bundle = run.run_dir / "bundle"
    weights = (bundle / "model.safetensors").read_bytes()
    test, batch = run.data.split("test"), run.config.eval.batch_size

    def score_of(backend: str) -> float:
        engine = on_tensors(Predictor(bundle, backend).engine)
        return float(score(run.task, engine, test, batch).compute()[metric])

    int8 = Predictor(bundle, "int8")
    predictor = Predictor(bundle)
    samples = predictor.codec.sample_inputs(max(BATCHES), seed=0)
    full = predictor.prepare(samples)
    return {
        "run": str(run_dir),
        "checkpoint": run.checkpoint.name,
        "metric": metric,
        "score": float(evaluation["metrics"][metric]),
        "parameters": sum(p.numel() for p in params),
        "nonzero": sum(int((p != 0).sum()) for p in params),
        "bundle_bytes": sum(f.stat().st_size for f in bundle.iterdir() if f.is_file()),
        "weights_bytes": len(weights),
        "weights_gzip_bytes": len(gzip.compress(weights, compresslevel=9)),
        "onnx_bytes": (bundle / "model.onnx").stat().st_size,
        "compact_bytes": (bundle / "model.compact").stat().st_size,
        "compact_score": score_of("compact"),
        "int8_bytes": int8.bundle.file("int8").stat().st_size,  # type: ignore[union-attr]
        "int8_score": score_of("int8"),
        "files": {f.name: f.stat().st_size for f in sorted(bundle.iterdir()) if f.is_file()},
        "latency_ms": {
            str(b): latency_ms(predictor, full[:b], 50 if b == 1 else 20) for b in BATCHES
        },
        "int8_latency_ms": {
            str(b): latency_ms(int8, full[:b], 50 if b == 1 else 20) for b in BATCHES
        },
    }
