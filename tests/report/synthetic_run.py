"""A synthetic, realistic run folder, as the trainer and evaluator write it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

CLASSES = [str(i) for i in range(10)]
FILES = (
    "config.yaml",
    "environment.json",
    "data.json",
    "metrics.jsonl",
    "status.json",
    "eval.json",
    "mistakes.npz",
    "export.json",
)


def _metrics_lines(epochs: int = 5, steps_per_epoch: int = 80, log_every: int = 2) -> list[dict]:
    lines: list[dict] = []
    step = 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch // log_every):
            step += log_every
            lines.append(
                {
                    "step": step,
                    "epoch": epoch,
                    "time": step * 0.05,
                    "train/loss": 2.3 * np.exp(-step / 120) + 0.05,
                    "lr": 1e-3 * 0.9**epoch,
                }
            )
        lines.append(
            {
                "step": step,
                "epoch": epoch,
                "time": step * 0.05 + 0.5,
                "train/loss_epoch": 2.0 / (epoch + 1),
                "val/loss": 1.5 / (epoch + 1),
                "val/accuracy": 0.8 + 0.03 * epoch,
                "val/f1_macro": 0.78 + 0.03 * epoch,
            }
        )
    return lines


def _evaluation(rng: np.random.Generator) -> dict:
    cm = rng.integers(0, 3, size=(10, 10)) + np.diag(rng.integers(30, 40, size=10))
    support = cm.sum(axis=1)
    recall = np.diag(cm) / support
    precision = np.diag(cm) / cm.sum(axis=0)
    f1 = 2 * precision * recall / (precision + recall)
    return {
        "split": "test",
        "checkpoint": "best",
        "n": int(cm.sum()),
        "classes": CLASSES,
        "metrics": {
            "accuracy": 0.9712,
            "precision_macro": 0.9655,
            "recall_macro": 0.9641,
            "f1_macro": 0.9633,
            "auroc_macro": 0.9987,
            "loss": 0.1234,
        },
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
        },
        "confusion_matrix": cm.tolist(),
    }


def write_run(run_dir: Path, name: str = "digits-mlp", omit: tuple[str, ...] = ()) -> Path:
    """Write every run file except those named in ``omit``."""
    rng = np.random.default_rng(0)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "name": name,
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [64]},
        "task": {"name": "image_classification"},
        "train": {"epochs": 5, "lr": 1e-3},
    }
    jsons = {
        "environment.json": {
            "python": "3.11.7",
            "torch": "2.13.0",
            "deepline": "0.1.0",
            "platform": "Linux-x86_64",
            "git_commit": "abc123",
            "seed": 0,
            "started_at": "2024-05-01T12:00:00",
            "num_threads": 2,
            "command": "deepline train digits.yaml",
            "packages": {"onnxruntime": "1.18.0"},
        },
        "data.json": {
            "name": "digits",
            "kind": "image",
            "input_shape": [1, 8, 8],
            "classes": CLASSES,
            "sizes": {"train": 1293, "val": 144, "test": 360},
            "mean": [0.3],
            "std": [0.4],
            "fingerprint": "f00dfeed" * 8,
            "input_scale": 16.0,
            "files": [],  # a run from before input codecs: "kind" names the codec
        },
        "status.json": {
            "status": "completed",
            "epochs": 5,
            "steps": 400,
            "wall_time_s": 40.2,
            "best": {"metric": "val/loss", "value": 0.1, "step": 300},
            "stopped_reason": None,
        },
        "eval.json": _evaluation(rng),
        "export.json": {
            "formats": {
                "safetensors": {"path": "model.safetensors"},
                "onnx": {"path": "model.onnx", "max_abs_diff": 3e-6, "atol": 1e-4, "ok": True},
            },
            "bundle": "bundle/",
        },
    }
    if "config.yaml" not in omit:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    for file, content in jsons.items():
        if file not in omit:
            (run_dir / file).write_text(json.dumps(content))
    if "metrics.jsonl" not in omit:
        lines = _metrics_lines()
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if "mistakes.npz" not in omit:
        n = 16
        np.savez(
            run_dir / "mistakes.npz",
            images=rng.random((n, 1, 8, 8), dtype=np.float32),
            true=rng.integers(0, 10, n).astype(np.int64),
            pred=rng.integers(0, 10, n).astype(np.int64),
            prob=rng.uniform(0.5, 1.0, n).astype(np.float32),
        )
    return run_dir
