"""Forecasting: a backtest that never looks ahead, metrics against references, baselines, the
served forecaster equal to the offline one, and clear errors for short histories and series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import mean_absolute_error, mean_squared_error

from deepline.config import DataConfig, load_config
from deepline.data import load_data
from deepline.data.series import backtest_origins
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.errors import ConfigError, DataError, InputError
from deepline.evaluate.loading import load_trained
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from deepline.tasks.forecast_baselines import forecast_metrics, mase_scale, seasonal_naive
from deepline.training.experiment import run_training

SERIES = {"time_column": "month", "target": "sales", "covariates": ["temperature"],
          "horizon": 6, "test_origins": 2, "val_origins": 2, "season": 12}  # fmt: skip


def write_series(path: Path, spike_from: int | None = None, n: int = 120) -> Path:
    """A seasonal series with a covariate; from row ``spike_from`` on, the target is 1e6."""
    t = np.arange(n)
    temperature = 10 + 8 * np.sin(2 * np.pi * t / 12)
    sales = 100 + 0.5 * t + 2 * temperature
    if spike_from is not None:
        sales[spike_from:] = 1e6
    rows = [f"{2000 + i // 12}-{i % 12 + 1:02d},{s:.3f},{c:.3f}"
            for i, s, c in zip(t, sales, temperature)]  # fmt: skip
    path.write_text("month,sales,temperature\n" + "\n".join(rows[::-1]) + "\n")  # newest first
    return path


def forecast_config(path: Path, **train: Any) -> dict[str, Any]:
    return {
        "name": "sales",
        "data": {"name": "series-csv", "path": str(path), "context": 24, "series": SERIES},
        "task": {"name": "forecasting", "baselines": ["seasonal_naive"]},
        "model": {"name": "nbeats", "blocks": 2, "width": 32, "layers": 2},
        "train": {"epochs": 3, "batch_size": 16, "num_threads": 1, "tensorboard": False, **train},
        "eval": {"batch_size": 8},
    }


def test_values_after_an_origin_never_reach_what_is_read_at_it(tmp_path: Path) -> None:
    run = run_training(load_config(forecast_config(write_series(tmp_path / "a.csv"))), tmp_path)
    clean = load_data(run.config.data)
    origin = clean.meta.series["origins"]["test"][-1]
    spiked_config = run.config.data.model_copy(
        update={"path": str(write_series(tmp_path / "b.csv", spike_from=origin))}
    )
    spiked = load_data(spiked_config)
    assert spiked.test.y[-1].min() == 1e6  # the spike is in what is forecast...
    assert torch.equal(spiked.test.x[-1], clean.test.x[-1])  # ...never in what is read
    assert torch.equal(spiked.train.x, clean.train.x) and torch.equal(spiked.val.x, clean.val.x)
    model = load_trained(run.run_dir).model
    with torch.no_grad():
        assert torch.equal(model(spiked.test.x[-1:]), model(clean.test.x[-1:]))
    task = load_trained(run.run_dir, data=spiked).task
    baseline = task.baselines(spiked, "test")["baseline_forecasts"]["seasonal_naive"][-1]
    assert max(baseline) < 1e3  # refitted on the history before the origin only


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(60, 400),
    horizon=st.integers(1, 12),
    tests=st.integers(1, 6),
    vals=st.integers(1, 4),
    stride=st.integers(1, 12),
)
def test_origins_are_ordered_and_each_horizon_ends_before_the_next_split(
    length: int, horizon: int, tests: int, vals: int, stride: int
) -> None:
    cfg = DataConfig(series={"horizon": horizon, "test_origins": tests, "val_origins": vals,
                             "stride": stride})  # fmt: skip
    origins = backtest_origins(length, cfg)
    assert origins["test"][-1] + horizon == length
    assert origins["val"][-1] + horizon == origins["test"][0]
    assert np.all(np.diff(origins["val"] + origins["test"]) > 0)


def test_metrics_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    actual, forecast = rng.uniform(1, 10, (4, 5)), rng.uniform(1, 10, (4, 5))
    scales = [2.0, 1.0, 0.5, 4.0]
    got = forecast_metrics(forecast, actual, scales)
    assert got["mae"] == pytest.approx(mean_absolute_error(actual.ravel(), forecast.ravel()))
    assert got["rmse"] == pytest.approx(mean_squared_error(actual.ravel(), forecast.ravel()) ** 0.5)
    smape = np.mean(200 * np.abs(forecast - actual) / (np.abs(forecast) + np.abs(actual)))
    assert got["smape"] == pytest.approx(smape)
    mase = np.mean([np.abs(f - a).mean() / s for f, a, s in zip(forecast, actual, scales)])
    assert got["mase"] == pytest.approx(mase)
    assert mase_scale(np.array([1.0, 2, 4, 7, 11]), 2) == pytest.approx((3 + 5 + 7) / 3)
    assert seasonal_naive(np.arange(10.0), 5, 3).tolist() == [7, 8, 9, 7, 8]


def test_the_table_is_read_in_time_order_with_its_covariate(tmp_path: Path) -> None:
    config = load_config(forecast_config(write_series(tmp_path / "a.csv"))).data
    data = load_data(config)
    assert data.meta.feature_names == ["sales", "temperature"] and data.meta.codec == "series"
    assert data.meta.series["times"][:2] == ["2000-01", "2000-02"]  # the file is newest first
    assert data.train.x.shape[1:] == (24, 2) and data.test.y.shape == (2, 6)


def test_a_series_too_short_for_its_windows_is_named(tmp_path: Path) -> None:
    config = load_config(forecast_config(write_series(tmp_path / "a.csv", n=40))).data
    with pytest.raises(DataError, match=r"has 40 values: too few for data\.context 24"):
        load_data(config)


def test_dataset_methods_are_refused_by_name(tmp_path: Path) -> None:
    raw = forecast_config(write_series(tmp_path / "a.csv"), privacy={"noise_multiplier": 1.0})
    with pytest.raises(ConfigError, match=r"train\.privacy cannot be combined with task forecast"):
        run_training(load_config(raw), tmp_path)


def test_the_served_forecaster_equals_the_offline_model(tmp_path: Path) -> None:
    run = run_training(load_config(forecast_config(write_series(tmp_path / "a.csv"))), tmp_path)
    bundle = Path(export_run(run.run_dir)["bundle"])
    data = load_data(run.config.data)
    with torch.no_grad():
        offline = load_trained(run.run_dir).model(data.test.x).numpy()
    values = np.asarray(data.meta.series["values"])
    origins = data.meta.series["origins"]["test"]
    covariate = data.test.x[:, :, 1].numpy()
    # whole histories (longer than the context): the codec reads their last 24 rows
    histories = [
        np.column_stack([values[:o], np.r_[np.zeros(o - 24), covariate[i]]]).tolist()
        for i, o in enumerate(origins)
    ]
    repository = tmp_path / "repository"
    add_bundle(bundle, repository, "sales")
    with BackgroundServer(create_app(repository, ServeSettings())) as server:
        answer = httpx.post(f"{server.url}/predict/sales", json={"inputs": histories})
        assert answer.status_code == 200, answer.text
        served = [[step["value"] for step in a] for a in answer.json()["predictions"]]
        np.testing.assert_allclose(served, offline, rtol=1e-4, atol=1e-3)
        short = httpx.post(f"{server.url}/predict/sales", json={"inputs": [histories[0][:10]]})
        assert short.status_code == 400 and "shorter than the model's context" in short.text
    with pytest.raises(InputError, match="a list of rows of 2 numbers"):
        Predictor(bundle).predict([[1.0] * 30])


def test_quantile_forecasts_give_intervals_and_their_coverage(tmp_path: Path) -> None:
    raw = forecast_config(write_series(tmp_path / "a.csv"))
    raw["task"]["quantiles"] = [0.1, 0.5, 0.9]
    run = run_training(load_config(raw), tmp_path)
    trained = load_trained(run.run_dir)
    from deepline.evaluate.evaluate import evaluate_trained

    evaluation = evaluate_trained(trained, "test")
    metrics = evaluation["metrics"]
    assert metrics["nominal_coverage"] == pytest.approx(0.8) and 0 <= metrics["coverage"] <= 1
    assert metrics["quantile_loss"] > 0 and np.array(evaluation["intervals"]["lower"]).shape == (
        2,
        6,
    )
    bundle = Path(export_run(run.run_dir)["bundle"])
    x = load_data(run.config.data).test.x
    with torch.no_grad():
        offline = trained.model(x).numpy()  # (2, 6, 3)
    answers = Predictor(bundle).predict(x.numpy().tolist())
    np.testing.assert_allclose([[s["lower"] for s in a] for a in answers], offline[..., 0],
                               rtol=1e-4, atol=1e-3)  # fmt: skip
    np.testing.assert_allclose([[s["value"] for s in a] for a in answers], offline[..., 1],
                               rtol=1e-4, atol=1e-3)  # fmt: skip
    with pytest.raises(ConfigError, match=r"task\.quantiles: quantiles must be at least two"):
        load_config({**raw, "task": {"name": "forecasting", "quantiles": [0.9, 0.1]}})


def test_evaluate_shows_the_baselines_beside_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.test_cli import deepline

    run = run_training(load_config(forecast_config(write_series(tmp_path / "a.csv"))), tmp_path)
    code, out, err = deepline(["evaluate", str(run.run_dir)], capsys)
    assert code == 0, err
    assert "model" in out and "seasonal_naive" in out and "mase" in out
    report = (run.run_dir / "report.html").read_text()
    assert "<th>model</th><th>seasonal_naive</th>" in report
    assert (run.run_dir / "plots" / "forecasts.png").stat().st_size > 1000
