"""``deepline export``: a run's model as a bundle folder, checked against eager PyTorch."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deepline import __version__
from deepline.deploy.bundle import BUNDLE_FORMAT, sha256_text
from deepline.deploy.onnx_export import export_onnx, max_abs_difference
from deepline.errors import ExportError
from deepline.evaluate.loading import TrainedRun, load_trained
from deepline.runs import read_json, write_json
from deepline.tensor_files import save_tensors

PARITY_EXAMPLES = 256


def export_run(
    run_dir: str | Path,
    checkpoint: str | None = None,
    data_dir: str | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``RUN_DIR/bundle/`` (weights, bundle.json, model.onnx) and ``export.json``.

    Raises ExportError when ONNX Runtime and PyTorch differ by more than ``export.atol``.
    """
    return export_trained(load_trained(run_dir, checkpoint, data_dir), out)


def export_trained(run: TrainedRun, out: str | Path | None = None) -> dict[str, Any]:
    """Export an already loaded run (see ``export_run``)."""
    bundle_dir = Path(out) if out else run.run_dir / "bundle"
    tmp = bundle_dir.with_name(f".{bundle_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_tensors(run.model.state_dict(), tmp / "model.safetensors")
    report: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "checkpoint": run.checkpoint.name,
        "formats": {"safetensors": {"path": "model.safetensors"}},
    }
    files = {"weights": "model.safetensors"}
    if run.data.meta.tokenizer:  # a file of its own, checked against bundle.json on load
        (tmp / "tokenizer.json").write_text(run.data.meta.tokenizer)
        files["tokenizer"] = "tokenizer.json"
    if run.config.export.onnx:
        report["formats"]["onnx"] = _export_onnx_checked(run, tmp / "model.onnx")
        files["onnx"] = "model.onnx"
    (tmp / "bundle.json").write_text(json.dumps(bundle_spec(run, files), indent=2))
    shutil.rmtree(bundle_dir, ignore_errors=True)
    tmp.rename(bundle_dir)
    write_json(run.run_dir / "export.json", report)
    failed = [k for k, v in report["formats"].items() if v.get("ok") is False]
    if failed:
        onnx = report["formats"]["onnx"]
        raise ExportError(
            f"ONNX output differs from PyTorch by {onnx['max_abs_diff']:.3g} "
            f"(> export.atol {onnx['atol']:g}) on {onnx['examples']} test inputs"
        )
    return report


def _export_onnx_checked(run: TrainedRun, path: Path) -> dict[str, Any]:
    split = run.data.test if len(run.data.test.x) else run.data.train
    inputs = run.task.example_inputs(split.x, PARITY_EXAMPLES)
    shape = run.task.signature()["inputs"][0]["shape"]
    dynamic = tuple(axis for axis, size in enumerate(shape) if size == -1)
    export_onnx(
        run.model,
        inputs[:2],
        path,
        run.config.export.opset,
        dynamic,
        max_len=int(run.data.meta.input_shape[0]),
    )
    diff = max_abs_difference(run.model, path, inputs)
    atol = run.config.export.atol
    return {
        "path": "model.onnx",
        "max_abs_diff": diff,
        "atol": atol,
        "ok": diff <= atol,
        "examples": len(inputs),
        "bytes": path.stat().st_size,
    }


def bundle_spec(run: TrainedRun, files: dict[str, str]) -> dict[str, Any]:
    meta = run.data.meta
    evaluation = read_json(run.run_dir / "eval.json", {}) or {}
    return {
        "format": BUNDLE_FORMAT,
        "name": run.config.name,
        "task": run.config.task.model_dump(),
        "model": run.config.model.model_dump(),
        "data": {**meta.to_dict(), "tokenizer": None},  # in tokenizer.json
        "tokenizer_sha256": sha256_text(meta.tokenizer) if meta.tokenizer else None,
        "preprocessing": meta.preprocessing(),
        "signature": run.task.signature(),
        "metrics": evaluation.get("metrics", {}),
        "metrics_split": evaluation.get("split"),
        "data_fingerprint": meta.fingerprint,
        "files": files,
        "source_run": str(run.run_dir),
        "checkpoint": run.checkpoint.name,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "deepline_version": __version__,
    }
