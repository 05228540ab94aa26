"""``deepline export``: a run's model as a bundle folder, each format checked against eager PyTorch.

A bundle always holds the weights (``model.safetensors``), ``bundle.json``, the inputs the
checks ran on (``examples.safetensors``: ``test_x``/``test_y``, up to 256 test inputs and their
targets, and ``calibration``, up to 128 training inputs) and the drift reference
(``reference.json``). ``export.formats`` adds registered formats (``deepline.deploy.formats``),
each checked on the test inputs:

- ``onnx``: ``model.onnx``, max |ONNX Runtime - PyTorch| <= ``export.atol``;
- ``torchscript``: ``model.torchscript.pt``, max |TorchScript - PyTorch| <= ``export.atol``;
- ``int8``: ``model.int8.onnx`` (conv nets, static, ONNX Runtime; needs the fp32
  ``model.onnx``, which is then exported and checked too) or ``model.int8.pt`` (the others,
  dynamic, TorchScript); the task's primary metric (accuracy; the loss of a language model) may
  get worse by at most ``export.int8_max_drop``.

``export_bundle`` adds formats to an existing bundle from its own ``examples.safetensors``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepline import __version__
from deepline.config import ExportConfig
from deepline.deploy.bundle import BUNDLE_FORMAT, load_bundle, sha256_text
from deepline.deploy.drift import reference_statistics
from deepline.deploy.formats import ExportJob, export_format, format_names
from deepline.errors import DeeplineError, ExportError
from deepline.evaluate.loading import TrainedRun, load_trained, predict_batches
from deepline.runs import read_json, write_json
from deepline.tasks import Task
from deepline.tensor_files import save_tensors

PARITY_EXAMPLES = 256
CALIBRATION_EXAMPLES = 128
REFERENCE_EXAMPLES = 2000


def export_run(
    run_dir: str | Path,
    checkpoint: str | None = None,
    data_dir: str | None = None,
    out: str | Path | None = None,
    formats: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``RUN_DIR/bundle/`` and ``RUN_DIR/export.json``; ``formats`` overrides the config's.

    Raises ExportError when a format fails its check (after writing both, so the report shows
    by how much).
    """
    return export_trained(load_trained(run_dir, checkpoint, data_dir), out, formats)


def export_trained(
    run: TrainedRun, out: str | Path | None = None, formats: Sequence[str] | None = None
) -> dict[str, Any]:
    """Export an already loaded run (see ``export_run``); the model is traced on the CPU."""
    run.model.to("cpu")
    config = _with_formats(run.config.export, formats)
    bundle_dir = Path(out) if out else run.run_dir / "bundle"
    tmp = bundle_dir.with_name(f".{bundle_dir.name}.tmp")  # renamed into place when complete
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_tensors(run.model.state_dict(), tmp / "model.safetensors")
    files = {"weights": "model.safetensors"}
    if run.data.meta.tokenizer:  # a file of its own, checked against bundle.json on load
        (tmp / "tokenizer.json").write_text(run.data.meta.tokenizer)
        files["tokenizer"] = "tokenizer.json"
    examples = run_examples(run)
    save_tensors(examples, tmp / "examples.safetensors")
    files["examples"] = "examples.safetensors"
    write_json(tmp / "reference.json", drift_reference(run))
    files["reference"] = "reference.json"
    checked, made = export_formats(run.model, run.task, examples, tmp, config.formats, config)
    files.update(made)
    report: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "checkpoint": run.checkpoint.name,
        "formats": {
            "safetensors": {
                "path": "model.safetensors",
                "bytes": (tmp / "model.safetensors").stat().st_size,
            },
            **checked,
        },
    }
    spec = {**bundle_spec(run, files), **_format_spec(checked), "export": config.model_dump()}
    write_json(tmp / "bundle.json", spec)
    write_json(tmp / "export.json", report)  # the bundle's own copy, which export_bundle extends
    shutil.rmtree(bundle_dir, ignore_errors=True)
    tmp.rename(bundle_dir)
    write_json(run.run_dir / "export.json", report)
    raise_on_failures(report["formats"])
    return report


def export_bundle(
    bundle_dir: str | Path,
    formats: Sequence[str] | None = None,
    config: ExportConfig | None = None,
) -> dict[str, Any]:
    """Add ``formats`` to an existing bundle, checked on its ``examples.safetensors``.

    The export settings (atol, opset, int8_max_drop) are ``config``'s, else those the bundle was
    exported with. New files are written, then ``bundle.json`` is replaced atomically; the
    report is merged into ``BUNDLE/export.json`` (and the run's, for ``RUN_DIR/bundle``).
    Raises ExportError like ``export_run``.

    >>> export_bundle("runs/digits_lenet/<time>/bundle", ["torchscript"])  # doctest: +SKIP
    """
    bundle = load_bundle(bundle_dir)
    config = _with_formats(config or ExportConfig(**bundle.spec.get("export", {})), formats)
    examples = bundle.examples()
    model, task = bundle.torch_model(), bundle.task()
    tmp = bundle.path / ".export.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        checked, made = export_formats(model, task, examples, tmp, config.formats, config)
        for name in made.values():
            os.replace(tmp / name, bundle.path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    had = bundle.spec.get("export", {}).get("formats", [])
    spec = {
        **bundle.spec,
        "files": {**bundle.spec.get("files", {}), **made},
        **_format_spec(checked),
        # the settings of the latest export, and every format the bundle now holds
        "export": {**config.model_dump(), "formats": check_formats([*had, *made])},
    }
    write_json(bundle.path / "bundle.json", spec)  # atomic: a temporary name, then os.replace
    previous = read_json(bundle.path / "export.json", {}) or {}
    report = {
        "bundle": str(bundle.path),
        "checkpoint": bundle.spec.get("checkpoint"),
        "formats": {**previous.get("formats", {}), **checked},
    }
    write_json(bundle.path / "export.json", report)
    run_dir = bundle.path.parent
    if bundle.path.name == "bundle" and (run_dir / "export.json").is_file():
        write_json(run_dir / "export.json", report)  # the run's copy stays in step
    raise_on_failures(checked)
    return report


# ------------------------------------------------------------------------------- formats


def export_formats(
    model: nn.Module,
    task: Task,
    examples: dict[str, torch.Tensor],
    out: Path,
    formats: Sequence[str],
    config: ExportConfig,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Write each format into ``out`` and check it: (report per format, {files key: name}).

    Formats run in their registered order, after the formats they are made from (int8 of a
    conv net adds onnx). A format that fails its check is reported but its file is removed and
    not listed.
    """
    model.eval()
    job = ExportJob(model, task, examples, out, config)
    wanted = set(check_formats(formats))
    wanted |= {need for name in list(wanted) for need in export_format(name).needs(job)}
    report: dict[str, dict[str, Any]] = {}
    for name in (f for f in format_names() if f in wanted):
        try:
            report[name] = export_format(name).export(job)
        except DeeplineError:
            raise
        except Exception as err:  # tracing, ONNX Runtime, torch.jit: errors of many classes
            raise ExportError(f"{name} export failed: {type(err).__name__}: {err}") from err
    failed = {key for key, entry in report.items() if entry.get("ok") is False}
    for key in failed:  # reported in export.json, never left where a Predictor could load it
        (out / report[key]["path"]).unlink(missing_ok=True)
    return report, {key: e["path"] for key, e in report.items() if key not in failed}


def raise_on_failures(formats: dict[str, dict[str, Any]]) -> None:
    """ExportError naming each failed check and its numbers."""
    problems = [
        export_format(name).failure(info)
        for name, info in formats.items()
        if info.get("ok") is False and name in format_names()
    ]
    if problems:
        raise ExportError("; ".join(problems))


def check_formats(formats: Sequence[str]) -> list[str]:
    """``formats`` (each once, in order), or an ExportError naming a bad one and the allowed."""
    formats = [name.strip().lower() for name in formats]
    allowed = ", ".join(format_names())
    for name in formats:
        if name == "safetensors":
            raise ExportError("safetensors weights are always written; --format adds " + allowed)
        if name not in format_names():
            raise ExportError(f"unknown export format '{name}'. Allowed: {allowed}")
    return list(dict.fromkeys(formats))


def _with_formats(config: ExportConfig, formats: Sequence[str] | None) -> ExportConfig:
    if formats is None:
        return config
    return config.model_copy(update={"formats": check_formats(formats)})


def _format_spec(checked: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What bundle.json says about the formats beyond their files: how int8 runs."""
    int8 = checked.get("int8")
    return {"int8": {"runtime": int8["runtime"], "method": int8["method"]}} if int8 else {}


# ------------------------------------------------------------------------------ examples


def run_examples(run: TrainedRun) -> dict[str, torch.Tensor]:
    """The inputs a bundle is checked on: ``test_x``, ``test_y`` and ``calibration``.

    Test inputs and targets come as the task batches them (for a language model, windows of the
    token stream and the next-token windows), from the test split, else val, else train.
    """
    data = run.data
    split = next((s for s in (data.test, data.val, data.train) if len(s.x)), data.train)
    test_x, test_y = run.task.example_batch(split, PARITY_EXAMPLES)
    calibration = run.task.example_inputs(data.train.x, CALIBRATION_EXAMPLES)
    # clones: tensors of their own (views of one token stream would share storage)
    return {
        "test_x": test_x.clone(),
        "test_y": test_y.clone(),
        "calibration": calibration.clone(),
    }


def drift_reference(run: TrainedRun) -> dict[str, Any]:
    """``reference.json``: summaries of up to 2000 model-ready training inputs (the codec's)
    and the drift signal of the model's fp32 outputs on them (the task's); see
    ``deepline.deploy.drift``."""
    task = run.task
    inputs = task.example_inputs(run.data.train.x, REFERENCE_EXAMPLES)
    outputs = predict_batches(run.model, inputs, 256).numpy()
    summaries = task.codec.summaries(inputs.numpy())
    return reference_statistics(summaries, task.drift_signal(outputs), task.drift_categories())


def fitted_for_checkpoint(
    run: TrainedRun, file: str, command: str
) -> tuple[dict[str, Any] | None, str]:
    """What ``command`` wrote to ``file`` in the run folder if it was fitted for the exported
    checkpoint, else (None, why the bundle does not apply it)."""
    fitted = read_json(run.run_dir / file, None)
    if not isinstance(fitted, dict):
        return None, f"not fitted: run `{command}`"
    if fitted.get("checkpoint") != run.checkpoint.name:
        return None, f"fitted for {fitted.get('checkpoint')}, not {run.checkpoint.name}"
    return fitted, ""


def calibration_of(run: TrainedRun) -> dict[str, Any]:
    """The temperature ``deepline calibrate`` fitted for the exported checkpoint, and whether
    the bundle applies it (not when it was fitted for other weights, or never)."""
    if not run.task.calibratable:
        return {"applied": False, "why": f"the {run.task.name} task has no probabilities"}
    fitted, why = fitted_for_checkpoint(run, "calibration.json", "deepline calibrate RUN_DIR")
    if fitted is None:
        return {"applied": False, "why": why}
    return {
        "applied": True,
        "temperature": fitted["temperature"],
        "fitted_on": fitted.get("fitted_on"),
        "split": fitted.get("split"),
        "ece_before": fitted["before"]["ece"],
        "ece_after": fitted["after"]["ece"],
    }


def thresholds_of(run: TrainedRun) -> dict[str, Any] | None:
    """The group thresholds ``deepline fairness --mitigate`` fitted for the exported checkpoint
    and whether the bundle decides by them; None for tasks that cannot."""
    if not run.task.thresholdable:
        return None
    fitted, why = fitted_for_checkpoint(
        run, "thresholds.json", "deepline fairness RUN_DIR --mitigate demographic_parity"
    )
    if fitted is None:
        return {"applied": False, "why": why}
    kinds = {c["name"]: c["kind"] for c in run.data.meta.columns}
    column = fitted["column"]
    if column not in kinds:
        why = f"the model does not see '{column}' (data.sensitive_input: false)"
        return {"applied": False, "why": why + ", so served rows cannot be grouped by it"}
    if kinds[column] != "categorical":
        return {"applied": False, "why": f"'{column}' is a numeric input: served rows are "
                f"grouped by a categorical one (declare it in data.columns)"}  # fmt: skip
    calibration = calibration_of(run)
    temperature = calibration["temperature"] if calibration["applied"] else 1.0
    if fitted.get("temperature", 1.0) != temperature:
        return {"applied": False, "why": f"fitted on probabilities at temperature "
                f"{fitted.get('temperature', 1.0)}, the bundle applies {temperature}: run "
                "`deepline fairness --mitigate` again"}  # fmt: skip
    return {"applied": True, **fitted}


def _task_config(run: TrainedRun, calibration: dict[str, Any], thresholds: Any) -> dict[str, Any]:
    """The task's config as the bundle applies it: fitted temperature and group thresholds."""
    task = run.config.task.model_dump()
    if calibration["applied"]:
        task["temperature"] = calibration["temperature"]
    if thresholds and thresholds["applied"]:
        task["thresholds"] = {k: thresholds[k] for k in ("column", "constraint", "rule")}
    return task


def privacy_of(run: TrainedRun) -> dict[str, Any] | None:
    """The (epsilon, delta) guarantee of the exported checkpoint of a DP-SGD run, else None."""
    config = run.config.train.privacy
    if config is None:
        return None
    from deepline.training.privacy_report import privacy_of_checkpoint

    return privacy_of_checkpoint(run.checkpoint, config)


def bundle_spec(run: TrainedRun, files: dict[str, str]) -> dict[str, Any]:
    meta = run.data.meta
    evaluation = read_json(run.run_dir / "eval.json", {}) or {}
    calibration, thresholds = calibration_of(run), thresholds_of(run)
    return {
        "format": BUNDLE_FORMAT,
        "name": run.config.name,
        "task": _task_config(run, calibration, thresholds),
        "calibration": calibration,
        "thresholds": thresholds,
        "card": run.config.card.model_dump(),
        "privacy": privacy_of(run),
        "model": run.config.model.model_dump(),
        "data": {**meta.to_dict(), "tokenizer": None},  # in tokenizer.json
        "tokenizer_sha256": sha256_text(meta.tokenizer) if meta.tokenizer else None,
        # what the input codec reads (a tokenizer is the checked tokenizer.json; an item
        # catalogue is in "data")
        "preprocessing": {
            k: v
            for k, v in run.task.codec.preprocessing.items()
            if k not in run.task.codec.kept_elsewhere
        },
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
