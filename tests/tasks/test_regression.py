"""The regression task: metrics against scikit-learn, the target scale inside the graph, and
the whole lifecycle from the command line on the bundled diabetes data (features in a CSV)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from deepline.config import DataConfig, load_config
from deepline.data import load_data
from deepline.data.codecs import codec_for
from deepline.errors import InputError
from deepline.tasks import build_task
from deepline.tasks.regression import Regression, TargetScale
from tests.cli.test_cli import deepline


@pytest.fixture(scope="module")
def task() -> Regression:
    config = load_config({"data": {"name": "diabetes"}, "model": {"name": "mlp", "hidden": [8]}})
    built = build_task(config.task, load_data(config.data).meta)
    assert isinstance(built, Regression)
    return built


def test_metrics_agree_with_scikit_learn(task: Regression) -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(150, 70, 200).astype(np.float32)
    pred = (true + rng.normal(0, 40, 200)).astype(np.float32)
    evaluator = task.evaluator()
    for i in range(0, 200, 64):  # in batches, as evaluation runs
        evaluator.update(torch.zeros(0), torch.from_numpy(pred[i : i + 64, None]),
                         torch.from_numpy(true[i : i + 64, None]))  # fmt: skip
    metrics = evaluator.compute()
    assert metrics["mse"] == pytest.approx(mean_squared_error(true, pred), rel=1e-5)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(true, pred), rel=1e-5)
    assert metrics["r2"] == pytest.approx(r2_score(true, pred), rel=1e-4)
    assert metrics["rmse"] == pytest.approx(mean_squared_error(true, pred) ** 0.5, rel=1e-5)
    details = evaluator.details()
    assert details["n"] == 200 and len(details["predictions"]["true"]) == 200


def test_the_model_answers_in_the_targets_units(task: Regression) -> None:
    config = load_config({"data": {"name": "diabetes"}, "model": {"name": "mlp", "hidden": [8]}})
    model = task.build_model(config.model)
    assert isinstance(model[-1], TargetScale)  # the scale is part of the exported graph
    mean, std = task.meta.target_mean[0], task.meta.target_std[0]
    assert 140 < mean < 160 and 70 < std < 85  # diabetes progression, training split
    zeros = torch.zeros(3, 1)
    assert torch.allclose(model[-1](zeros), torch.full((3, 1), mean))
    # the loss is on standardised targets: predicting the mean costs about 1 (the variance)
    y = torch.from_numpy(load_data(DataConfig(name="diabetes")).train.y.numpy())
    assert task.loss(torch.full_like(y, mean), y).item() == pytest.approx(1.0, rel=1e-3)


def test_answers_and_table_cells(task: Regression) -> None:
    named = task.named_outputs(np.array([[151.25], [80.0]], dtype=np.float32))
    answers = task.answers(named)
    assert answers == [[{"target": "progression", "value": 151.25}],
                       [{"target": "progression", "value": 80.0}]]  # fmt: skip
    assert task.answer_cells(answers[0]) == ["progression 151.2"]
    assert task.outputs()[0].to_dict() == {"name": "values", "datatype": "FP32", "shape": [-1, 1]}


def test_features_are_read_from_csv_and_json(task: Regression, tmp_path: Path) -> None:
    codec = codec_for(task.meta)
    rows = tmp_path / "rows.csv"
    rows.write_text("id,age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n7,59,2,32.1,101,157,93.2,38,4,4.9,87\n")
    ((name, row),) = codec.read_file(rows)
    assert name == f"{rows}[0]" and row["age"] == 59.0 and "id" not in row
    doc = tmp_path / "one.json"
    doc.write_text(json.dumps(row))
    assert codec.read_file(doc) == [(f"{doc}[0]", row)]
    np.testing.assert_allclose(codec.decode([row]), codec.decode_named({"": [row]}))
    bad = tmp_path / "bad.csv"
    bad.write_text("age,sex\nold,2\n")
    with pytest.raises(InputError, match="'old' is not a number"):
        codec.read_file(bad)
    with pytest.raises(InputError, match="lacks the feature"):
        codec.decode([{"age": 50}])


def test_the_lifecycle_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, out, err = deepline(
        ["train", "diabetes_mlp", "--run-dir", str(run), "--set", "train.epochs=3",
         "--set", "train.tensorboard=false"], capsys,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = deepline(["evaluate", str(run)], capsys)
    assert code == 0 and "r2" in out, err
    assert (run / "plots" / "predicted_vs_true.png").stat().st_size > 1000
    assert "Predicted against true" in (run / "report.html").read_text()
    code, out, err = deepline(["export", str(run), "--format", "onnx,torchscript"], capsys)
    assert code == 0, err
    rows = tmp_path / "rows.csv"
    rows.write_text("age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n59,2,32.1,101,157,93.2,38,4,4.9,87\n")
    code, out, err = deepline(["predict", str(run / "bundle"), str(rows)], capsys)
    assert code == 0 and "progression" in out, err
