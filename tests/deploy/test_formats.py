"""Export formats checked at export time: ONNX and TorchScript against eager PyTorch, int8
against the fp32 model's metric; bundles that keep their check inputs and drift reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from deepline.config import ExportConfig, load_config
from deepline.data import load_data
from deepline.deploy.bundle import load_bundle
from deepline.deploy.drift import reference_statistics
from deepline.deploy.export import (
    check_formats,
    export_bundle,
    export_formats,
    export_run,
    run_examples,
)
from deepline.deploy.onnx_export import onnx_session
from deepline.deploy.torchscript_export import load_torchscript
from deepline.errors import ConfigError, ExportError
from deepline.evaluate.loading import TrainedRun, load_trained, predict_batches
from deepline.tasks import build_task
from deepline.tensor_files import load_tensors, save_tensors
from deepline.training.experiment import run_training
from tests.cli.test_cli import assert_clear_error, deepline
from tests.conftest import tiny_config
from tests.serve.conftest import ROMEO

ALL = ["onnx", "torchscript", "int8"]


def train(tmp: Path, **fields: Any) -> Path:
    raw = {**tiny_config(epochs=3, lr=0.02, schedule={"name": "onecycle"}), **fields}
    return run_training(load_config(raw), tmp).run_dir


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run_dir = train(tmp_path_factory.mktemp("lenet"))
    return run_dir, export_run(run_dir, formats=ALL)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    model = {"name": "mlp", "hidden": [128, 64], "dropout": 0.0}
    run_dir = train(tmp_path_factory.mktemp("mlp"), model=model)
    return run_dir, export_run(run_dir, formats=["int8"])


def test_lenet_every_format_within_its_limit(lenet: tuple[Path, dict[str, Any]]) -> None:
    run_dir, report = lenet
    formats = report["formats"]
    for name in ("onnx", "torchscript"):
        assert formats[name]["ok"] and formats[name]["max_abs_diff"] <= 1e-4, formats[name]
        assert formats[name]["examples"] == 256
    int8 = formats["int8"]
    assert int8["runtime"] == "onnxruntime" and int8["path"] == "model.int8.onnx"
    assert int8["metric"] == "accuracy" and int8["higher_is_better"]
    assert int8["ok"] and int8["change"] >= -int8["max_drop"] == -0.02
    assert int8["fp32"] > 0.8  # a trained model: the comparison means something
    assert int8["bytes"] < int8["fp32_bytes"] == formats["onnx"]["bytes"]
    assert json.loads((run_dir / "export.json").read_text())["formats"] == formats

    bundle = load_bundle(report["bundle"])
    assert bundle.spec["files"] == {
        "weights": "model.safetensors",
        "examples": "examples.safetensors",
        "reference": "reference.json",
        "onnx": "model.onnx",
        "torchscript": "model.torchscript.pt",
        "int8": "model.int8.onnx",
    }
    assert bundle.spec["int8"]["runtime"] == "onnxruntime"
    assert bundle.spec["int8"]["method"].startswith("static QDQ")
    assert bundle.spec["export"]["formats"] == ALL

    # the files run at batch sizes other than the traced one
    model, x = bundle.torch_model(), bundle.examples()["test_x"][:7]
    expected = model(x).detach()
    traced = load_torchscript(bundle.file("torchscript"))  # type: ignore[arg-type]
    torch.testing.assert_close(traced(x), expected, atol=1e-4, rtol=0)
    int8_onnx = onnx_session(bundle.file("int8"))  # type: ignore[arg-type]
    logits = int8_onnx.run(None, {"input": x.numpy()})[0]
    assert logits.shape == (7, 10)


def test_bundle_keeps_check_examples_and_drift_reference(
    lenet: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, report = lenet
    bundle = load_bundle(report["bundle"])
    examples = bundle.examples()
    data = load_data(load_trained(run_dir).config.data)
    assert set(examples) == {"test_x", "test_y", "calibration"}
    assert torch.equal(examples["test_x"], data.test.x[:256])
    assert torch.equal(examples["test_y"], data.test.y[:256])
    assert torch.equal(examples["calibration"], data.train.x[:128])
    # the reference: model-ready (normalised) training inputs and the fp32 model's outputs
    inputs = data.train.x[:2000]
    outputs = predict_batches(bundle.torch_model(), inputs)
    task = bundle.task()
    reference = reference_statistics(
        task.codec.summaries(inputs.numpy()), task.drift_signal(outputs.numpy()), 10
    )
    assert bundle.reference() == json.loads(json.dumps(reference))
    assert bundle.reference()["examples"] == len(data.train.x) == 1294  # type: ignore[index]


def test_mlp_dynamic_int8_is_smaller_and_as_accurate(mlp: tuple[Path, dict[str, Any]]) -> None:
    _, report = mlp
    int8 = report["formats"]["int8"]
    assert int8["runtime"] == "torchscript" and int8["path"] == "model.int8.pt"
    assert int8["ok"] and int8["change"] >= -0.02 and int8["fp32"] > 0.8
    assert int8["size_ratio"] < 0.6  # int8 weights: well under the fp32 TorchScript's size
    bundle = load_bundle(report["bundle"])
    assert "onnx" not in bundle.spec["files"] and "onnx" not in report["formats"]
    assert bundle.spec["int8"]["runtime"] == "torchscript"
    assert bundle.spec["int8"]["method"].startswith("dynamic")
    quantized = load_torchscript(bundle.file("int8"))  # type: ignore[arg-type]
    x = bundle.examples()["test_x"][:5]
    assert quantized(x).shape == (5, 10)


def test_int8_drop_beyond_the_limit_fails(mlp: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """An outlier weight on an input that never changes: fp32 is unaffected (the bias cancels
    it), but per-tensor int8 weights can then no longer represent the others."""
    _, report = mlp
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(report["bundle"], bundle_dir)
    bundle = load_bundle(bundle_dir)
    examples = bundle.examples()
    inputs = torch.cat([examples["test_x"], examples["calibration"]]).flatten(1)
    constant = int(torch.nonzero(inputs.std(0) == 0)[0])  # a corner pixel: always blank
    weights = load_tensors(bundle_dir / "model.safetensors")
    w, b = weights["net.1.weight"], weights["net.1.bias"]
    w[:, constant] += 1000.0
    b -= 1000.0 * inputs[0, constant]
    save_tensors(weights, bundle_dir / "model.safetensors")
    message = r"int8 accuracy is .* in fp32 \(lower by .* > export\.int8_max_drop 0\.02\)"
    with pytest.raises(ExportError, match=message):
        export_bundle(bundle_dir, ["int8"])
    int8 = json.loads((bundle_dir / "export.json").read_text())["formats"]["int8"]
    assert not int8["ok"] and int8["change"] < -0.2
    assert int8["fp32"] == pytest.approx(report["formats"]["int8"]["fp32"], abs=0.01)


def test_export_bundle_adds_torchscript(
    lenet: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = lenet
    out = tmp_path / "bundle"
    export_run(run_dir, out=out, formats=["onnx"])
    assert set(load_bundle(out).spec["files"]) == {"weights", "examples", "reference", "onnx"}
    code, printed, err = deepline(["export", str(out), "--format", "torchscript"], capsys)
    assert code == 0, err
    assert "torchscript" in printed and "model.torchscript.pt" in printed and "ok" in printed
    bundle = load_bundle(out)
    assert bundle.spec["files"]["torchscript"] == "model.torchscript.pt"
    assert bundle.spec["files"]["onnx"] == "model.onnx"  # kept
    assert bundle.spec["export"]["formats"] == ["onnx", "torchscript"]
    checked = json.loads((out / "export.json").read_text())["formats"]["torchscript"]
    assert checked["ok"] and checked["max_abs_diff"] <= 1e-4
    assert not (out / ".export.tmp").exists()


def test_bad_format_names_are_clear_errors(
    lenet: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = r"export\.formats\.1: unknown export format 'tflite'\. Allowed: compact, int8, onnx"
    with pytest.raises(ConfigError, match=unknown):
        load_config({"model": {"name": "mlp"}, "export": {"formats": ["onnx", "tflite"]}})
    run_dir, _ = lenet
    with pytest.raises(ExportError, match=r"'tflite'\. Allowed: onnx, torchscript, int8"):
        export_run(run_dir, formats=["tflite"])
    code, _, err = deepline(["export", str(run_dir), "--format", "onnx,tflite"], capsys)
    assert_clear_error(code, err, "unknown export format 'tflite'", "onnx, torchscript, int8")
    code, _, err = deepline(["export", str(run_dir), "--format", " "], capsys)
    assert_clear_error(code, err, "names no format", "onnx, torchscript, int8")
    code, _, err = deepline(["export", str(run_dir), "--format", "safetensors"], capsys)
    assert_clear_error(code, err, "always written", "onnx, torchscript, int8")
    assert check_formats(["ONNX", " int8"]) == ["onnx", "int8"]
    assert load_config({"model": {"name": "mlp"}, "export": {"onnx": False}}).export.formats == []


def test_lstm_exports_torchscript_and_dynamic_int8(tmp_path: Path) -> None:
    overrides = {
        "data.name": "sequential-digits",
        "train.epochs": None,
        "train.max_steps": 30,
        "model.hidden": 32,
        "model.layers": 1,
        "model.dropout": 0.0,
        "train.num_threads": 1,
        "train.tensorboard": False,
        "eval.batch_size": 1024,
    }
    run_dir = run_training(load_config("smnist_lstm", overrides), tmp_path).run_dir
    formats = export_run(run_dir, formats=["torchscript", "int8"])["formats"]
    assert formats["torchscript"]["ok"] and formats["torchscript"]["max_abs_diff"] <= 1e-4
    int8 = formats["int8"]
    assert int8["runtime"] == "torchscript" and int8["ok"] and int8["size_ratio"] < 1
    bundle = load_bundle(run_dir / "bundle")
    model, x = bundle.torch_model(), bundle.examples()["test_x"]
    traced = load_torchscript(bundle.file("torchscript"))  # type: ignore[arg-type]
    quantized = load_torchscript(bundle.file("int8"))  # type: ignore[arg-type]
    for batch in (x[:1], x[:5], x[:5, :5]):  # traced on 2 x 8 steps: other sizes and lengths
        torch.testing.assert_close(traced(batch), model(batch).detach(), atol=1e-4, rtol=0)
        assert quantized(batch).shape == (len(batch), 10)
    assert x.shape[1:] == (8, 8)  # the digits' 8 rows of 8 pixels


def test_language_model_int8_is_judged_by_its_loss(tmp_path: Path) -> None:
    """No training needed: the targets, the metric and its direction are what is checked."""
    torch.manual_seed(0)
    cfg = load_config(
        {
            "data": {"name": "text-file", "path": str(ROMEO), "context": 16},
            "task": {"name": "language_modelling"},
            "model": {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 32},
        }
    )
    data = load_data(cfg.data)
    task = build_task(cfg.task, data.meta)
    model = task.build_model(cfg.model).eval()
    run = TrainedRun(tmp_path, cfg, data, task, model, tmp_path / "none")
    examples = run_examples(run)
    x, y = examples["test_x"], examples["test_y"]
    windows = min(256, (len(data.test.x) - 1) // 16)  # the test stream's whole windows
    assert x.shape == y.shape == (windows, 16) and torch.equal(x[:, 1:], y[:, :-1])
    config = ExportConfig(int8_max_drop=0.1)
    report, files = export_formats(model, task, examples, tmp_path, ["int8"], config)
    int8 = report["int8"]
    assert files == {"int8": "model.int8.pt"} and int8["runtime"] == "torchscript"
    assert int8["metric"] == "loss" and not int8["higher_is_better"]
    assert int8["ok"] and abs(int8["change"]) <= 0.1
