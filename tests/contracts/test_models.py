"""The contract of every registered model, from its own example: it builds from its config,
trains a few steps on the example's data through the task that data is for, and exports to ONNX
within tolerance of eager PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepline.deploy.export import export_trained
from deepline.evaluate.loading import load_trained
from deepline.registry import MODELS
from deepline.runs import read_json
from tests.contracts.conftest import example_config, example_data, example_run


@pytest.mark.parametrize("name", MODELS.names())
def test_trains_and_exports_with_parity(name: str, tmp_path: Path) -> None:
    config, run_dir = example_run(MODELS.meta(name)["example"], name, "model", tmp_path)
    status = read_json(run_dir / "status.json")
    _, data = example_data(config, tmp_path / "data")
    run = load_trained(run_dir, data=data)
    closed_form = not any(p.requires_grad for p in run.model.parameters())
    assert status["steps"] == (0 if closed_form else 3), status  # counted, not stepped
    assert status["status"] == "completed", status
    assert run.config.model.name == name
    before = [p.detach().clone() for p in run.model.parameters()]
    onnx = export_trained(run)["formats"]["onnx"]
    assert onnx["ok"] and onnx["max_abs_diff"] <= onnx["atol"], onnx
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.parameters()))


@pytest.mark.parametrize("name", MODELS.names())
def test_config_round_trips_and_rejects_unknown_keys(name: str) -> None:
    config = example_config(MODELS.meta(name)["example"], name, "model").model
    config_cls = MODELS.meta(name)["config"]
    assert type(config) is config_cls
    assert config_cls.model_validate(config.model_dump()) == config
    with pytest.raises(ValueError, match="extra"):
        config_cls.model_validate({**config.model_dump(), "no_such_setting": 1})
    doc = MODELS.get(name).__doc__ or ""
    assert doc.strip(), f"model '{name}' has no docstring"
