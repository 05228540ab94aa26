"""Temperature scaling: fitted on validation logits, never changes a prediction, lowers ECE
on an overconfident model, and travels in the bundle to the Predictor and every protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepline.config import DataConfig, task_config
from deepline.data import load_data
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.evaluate.loading import load_trained
from deepline.runs import read_json
from deepline.tasks import build_task
from deepline.trust.calibration import calibrate_run, fit_temperature, write_calibration


def test_the_fitted_temperature_recovers_the_one_that_made_the_labels() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 5, generator=generator) * 3
    labels = torch.multinomial(torch.softmax(logits / 2.0, -1), 1, generator=generator)[:, 0]
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.05)


DIGITS = load_data(DataConfig(name="digits")).meta


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.floats(0.05, 20.0), st.integers(0, 2**16))
def test_a_temperature_never_changes_the_predicted_class(n: int, t: float, seed: int) -> None:
    logits = np.random.default_rng(seed).normal(size=(n, 10)).astype(np.float32) * 5
    hot, cooled = (
        build_task(task_config({"name": "image_classification", "temperature": temperature}),
                   DIGITS).named_outputs(logits)
        for temperature in (1.0, t)
    )  # fmt: skip
    assert (hot["label"] == cooled["label"]).all()
    np.testing.assert_allclose(cooled["probabilities"].sum(-1), 1.0, rtol=1e-5)
    assert (cooled["probabilities"].argmax(-1) == hot["probabilities"].argmax(-1)).all()


def test_calibrate_then_export_applies_the_temperature_everywhere(
    digits_run: Path, tmp_path: Path
) -> None:
    run = load_trained(digits_run)
    fitted_on_val = calibrate_run(run, split="val")  # the temperature minimises val NLL
    assert fitted_on_val["after"]["nll"] <= fitted_on_val["before"]["nll"] + 1e-6
    result = calibrate_run(run)
    write_calibration(run.run_dir, result)
    t = result["temperature"]
    assert result["before"]["accuracy"] == result["after"]["accuracy"]
    evaluation = result["before"]
    assert 0 <= evaluation["ece"] <= evaluation["mce"] <= 1
    bundle = Path(export_run(digits_run, out=tmp_path / "bundle", formats=["onnx"])["bundle"])
    spec = read_json(bundle / "bundle.json")
    assert spec["calibration"]["applied"] and spec["task"]["temperature"] == t
    x = run.data.test.x[:16]
    logits = run.model(x).detach().numpy()
    expected = torch.softmax(torch.from_numpy(logits) / t, -1).numpy()
    for backend in ("torch", "onnx"):
        predictor = Predictor(bundle, backend)
        named = predictor.named_outputs(predictor.run(x.numpy()))
        np.testing.assert_allclose(named["probabilities"], expected, atol=1e-5)


def test_a_bundle_of_other_weights_does_not_apply_a_stale_temperature(
    digits_run: Path, tmp_path: Path
) -> None:
    run = load_trained(digits_run, checkpoint="best")
    write_calibration(run.run_dir, {**calibrate_run(run), "checkpoint": "step-00000001"})
    spec = read_json(Path(export_run(digits_run, out=tmp_path / "b", formats=[])["bundle"])
                     / "bundle.json")  # fmt: skip
    assert not spec["calibration"]["applied"] and "fitted for" in spec["calibration"]["why"]
    assert spec["task"]["temperature"] == 1.0
