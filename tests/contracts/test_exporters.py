"""The contract of every registered export format: from a model of each task's example (a
classifier of images, a regression, ...) it writes a file that passes its own check, and a
Predictor whose backend is the format answers like eager PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepline.deploy.export import export_trained
from deepline.deploy.formats import format_names
from deepline.deploy.predictor import Predictor
from deepline.evaluate.loading import load_trained
from deepline.registry import EXPORTERS, TASKS
from tests.contracts.conftest import example_data, example_run

# tasks whose example model every format must export (a generating task is checked by the task
# contract and the int8 tests: its answers are samples, not numbers to compare)
TASKS_EXPORTED = ("image_classification", "regression")


@pytest.fixture(scope="module", params=TASKS_EXPORTED)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp(request.param)
    config, run_dir = example_run(TASKS.meta(request.param)["example"], request.param, "task", root)
    _, data = example_data(config, root / "data")
    return load_trained(run_dir, data=data)


@pytest.mark.parametrize("name", format_names())
def test_exports_a_checked_file_that_a_predictor_runs(run, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = export_trained(run, tmp_path / "bundle", formats=[name])
    entry = report["formats"][name]
    assert entry["ok"] and (tmp_path / "bundle" / entry["path"]).is_file(), entry
    assert entry["bytes"] == (tmp_path / "bundle" / entry["path"]).stat().st_size
    exported, eager = Predictor(tmp_path / "bundle", name), Predictor(tmp_path / "bundle", "torch")
    samples = eager.codec.sample_inputs(8)
    got, want = exported.run(exported.prepare(samples)), eager.run(eager.prepare(samples))
    assert got.shape == want.shape
    if "atol" in entry:  # a float format: the same numbers
        np.testing.assert_allclose(got, want, atol=entry["atol"] * 10, rtol=1e-4)
    else:  # a quantized one is judged by its metric; its outputs stay close
        assert np.corrcoef(got.reshape(-1), want.reshape(-1))[0, 1] > 0.9


def test_unknown_formats_are_refused_by_name() -> None:
    from deepline.config import load_config
    from deepline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown export format 'onx'.*Did you mean 'onnx'"):
        load_config({"export": {"formats": ["onx"]}})
    assert set(format_names()) == set(EXPORTERS.names())
