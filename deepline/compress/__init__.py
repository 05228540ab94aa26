"""Compression of a trained run (``deepline compress``): a plan of steps (prune, distill),
each stage a run of its own, and one table of what each stage costs and saves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepline.compress.plan import parse_plan, stage_config
from deepline.config import load_config
from deepline.runs import check_run_dir, read_json, write_json

ARTIFACT = "compress.json"


def compress_run(
    run_dir: str | Path, plan: str, epochs: int = 3, data_dir: str | None = None
) -> dict[str, Any]:
    """Apply ``plan`` to the run in order, each stage fine-tuned for ``epochs`` from the one
    before in ``RUN/compressed/<stages>/``; measure the run and every stage; write
    ``RUN/compress.json`` and return it."""
    from deepline.compress.measure import measure  # ONNX Runtime and the exporters: when used
    from deepline.training.experiment import run_training

    source = check_run_dir(run_dir).resolve()
    steps = parse_plan(plan)
    config = load_config(source / "config.yaml")
    if data_dir is not None:
        config.data.data_dir = data_dir
    rows = [{"stage": "original", **measure(source, data_dir)}]
    checkpoint = rows[0].pop("checkpoint")
    previous, labels = source, []
    for step in steps:
        labels.append(step.label)
        config = stage_config(config, step, str(previous), str(source), epochs)
        folder = source / "compressed" / "_".join(labels)
        run_training(config, run_dir=folder)
        row = measure(folder, data_dir)
        row.pop("checkpoint")
        rows.append({"stage": " + ".join(labels), **row})
        previous = folder
    result = {"plan": plan, "epochs": epochs, "checkpoint": checkpoint, "stages": rows}
    write_json(source / ARTIFACT, result)
    return result


def read_compression(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's last ``compress.json`` (None before any)."""
    found = read_json(check_run_dir(run_dir) / ARTIFACT)
    return found if isinstance(found, dict) else None


__all__ = ["compress_run", "read_compression"]
