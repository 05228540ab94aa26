"""`deepline runs`: list and compare run folders; optional MLflow logging of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepline.config import load_config
from deepline.training.experiment import run_training
from tests.cli.test_cli import deepline
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("runs")
    a = run_training(load_config(tiny_config(epochs=1)), root).run_dir
    b = run_training(load_config(tiny_config(epochs=2, lr=0.02)), root).run_dir
    return root, [a, b]


def test_list(two_runs, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one line per run
    root, paths = two_runs
    code, out, _ = deepline(["runs", str(root)], capsys)
    assert code == 0
    assert all(p.name in out for p in paths) and "completed" in out and "lenet" in out


def test_compare(two_runs, tmp_path, capsys) -> None:
    _, (a, b) = two_runs
    plot = tmp_path / "curves.png"
    code, out, err = deepline(["runs", "compare", str(a), str(b), "--out", str(plot)], capsys)
    assert code == 0, err
    assert "train.epochs" in out and "train.lr" in out and "val/accuracy" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_compare_needs_two(two_runs, capsys) -> None:
    _, (a, _) = two_runs
    code, _, err = deepline(["runs", "compare", str(a)], capsys)
    assert code == 2 and "at least two" in err


def test_mlflow_logging(tmp_path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = run_training(load_config(tiny_config(epochs=2, mlflow=True)), tmp_path / "runs")
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert len(runs) == 1
    logged = runs[0].data
    assert logged.params["lr"] == "0.01"
    assert logged.metrics["val/accuracy"] == pytest.approx(exp.trainer.logs["val/accuracy"])
    assert logged.tags["deepline.run_dir"] == str(exp.run_dir)
    assert json.loads((exp.run_dir / "status.json").read_text())["status"] == "completed"
