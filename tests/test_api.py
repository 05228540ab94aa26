"""The Python API: train -> Run -> evaluate/export/report; Keras-style fit on your own module."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import deepline
from tests.conftest import tiny_config


class TinyNet(nn.Module):
    """A user's own classifier on 8x8 images. Input (B, 1, 8, 8), output (B, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_train_evaluate_export_report(tmp_path: Path) -> None:
    run = deepline.train(tiny_config(), overrides={"train.epochs": 2}, runs_dir=tmp_path)
    assert run.status["status"] == "completed"
    assert run.config.train.epochs == 2
    result = run.evaluate()
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    exported = run.export()
    assert exported["formats"]["onnx"]["ok"]
    assert run.report().is_file()
    [(name, answers)] = run.predictor("torch").predict_files([_png(tmp_path)])
    assert name.endswith(".png") and answers[0]["class"] in [str(i) for i in range(10)]
    again = deepline.Run(run.path)  # reopened from disk
    assert again.status["steps"] == run.status["steps"]


def test_fit_own_module_on_tensors(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(digits.target)
    run = deepline.fit(
        TinyNet(),
        x[:1400],
        y[:1400],
        validation_data=(x[1400:], y[1400:]),
        epochs=4,
        lr=0.01,
        runs_dir=tmp_path,
        tensorboard=True,
    )
    assert (run.path / "checkpoints").is_dir() and (run.path / "tb").is_dir()
    assert run.evaluate(split="val")["metrics"]["accuracy"] > 0.85
    assert run.export()["formats"]["onnx"]["ok"]
    assert "report" in run.report().read_text().lower()


def _png(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.new("L", (20, 20), 0).save(path)
    return path
