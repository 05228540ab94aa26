"""Each plot writes a real, non-trivial PNG, and copes with sparse or odd inputs."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from deepline import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, min_side: int = 50) -> tuple[int, int]:
    """The file is a PNG of a plausible size; returns (width, height) in pixels."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        width, height = img.size
    assert width >= min_side and height >= min_side
    return width, height


def _records(epochs: int = 3, steps_per_epoch: int = 20) -> list[dict]:
    out: list[dict] = []
    for step in range(1, epochs * steps_per_epoch + 1):
        epoch = (step - 1) // steps_per_epoch
        out.append(
            {"step": step, "epoch": epoch, "time": step * 0.1, "train/loss": 1 / step, "lr": 1e-3}
        )
        if step % steps_per_epoch == 0:
            out.append(
                {
                    "step": step,
                    "epoch": epoch,
                    "time": step * 0.1,
                    "val/loss": 0.5,
                    "val/accuracy": 0.9,
                    "val/f1_macro": 0.88,
                    "train/loss_epoch": 0.6,
                }
            )
    return out


@pytest.mark.parametrize("n", [2, 10, 30])
@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix(tmp_path: Path, n: int, normalize: bool) -> None:
    rng = np.random.default_rng(n)
    cm = rng.integers(0, 5, (n, n)) + np.diag(rng.integers(20, 50, n))
    cm[0] = 0  # a class absent from the split must not produce NaN colours or warnings
    classes = [f"class-{i}" for i in range(n)]
    out = plots.plot_confusion_matrix(cm, classes, tmp_path / "sub" / "cm.png", normalize)
    assert out == tmp_path / "sub" / "cm.png"
    width, _ = _check_png(out, min_side=300)
    if n == 30:
        assert width > 1000  # the figure grows with the class count so labels stay legible


def test_per_class(tmp_path: Path) -> None:
    classes = ["cat", "dog", "$bird$"]  # a "$" must not be parsed as math text
    per_class = {
        "precision": [0.9, 0.8, 0.7],
        "recall": [0.8, 0.9, 0.6],
        "f1": [0.85, 0.85, 0.65],
        "support": [10.0, 12.0, 3.0],
    }
    _check_png(plots.plot_per_class(per_class, classes, tmp_path / "pc.png"))
    _check_png(plots.plot_per_class({"f1": [0.5, 0.6, 0.7]}, classes, tmp_path / "f1.png"))


@pytest.mark.parametrize(
    "records",
    [
        _records(),
        _records()[:1],  # a single step line
        [{"step": 5, "epoch": 0, "val/accuracy": 0.5}],  # a single epoch line, no loss or lr
        [
            {"step": 1, "train/loss": float("nan")},
            {"step": 2, "train/loss": float("inf")},
            {"step": 3, "train/loss": 0.5},
        ],  # a diverged run
        [{"epoch": 0}, {"step": "x", "lr": 0.1}, {"step": 3, "note": "text", "flag": True}],
        [],
    ],
    ids=["full", "one-step", "one-epoch", "non-finite", "junk", "empty"],
)
def test_learning_curves(tmp_path: Path, records: list[dict]) -> None:
    _check_png(plots.plot_learning_curves(records, tmp_path / "lc.png"))


def test_learning_curves_panels(tmp_path: Path) -> None:
    # Three panels (loss, validation metrics, lr) make a wider figure than one panel.
    wide, _ = _check_png(plots.plot_learning_curves(_records(), tmp_path / "all.png"))
    only_loss = [{"step": s, "train/loss": 1 / s} for s in range(1, 10)]
    narrow, _ = _check_png(plots.plot_learning_curves(only_loss, tmp_path / "loss.png"))
    assert wide > 2 * narrow


@pytest.mark.parametrize(
    ("shape", "ncols"),
    [((16, 1, 8, 8), 8), ((5, 3, 32, 32), 4), ((1, 1, 28, 28), 8), ((3, 1, 8, 8), 1)],
)
def test_image_grid(tmp_path: Path, shape: tuple[int, ...], ncols: int) -> None:
    images = np.random.default_rng(0).random(shape, dtype=np.float32)
    titles = [f"{i} → {i + 1} (0.9{i % 10})" for i in range(shape[0])]
    width, height = _check_png(plots.plot_image_grid(images, titles, tmp_path / "g.png", ncols))
    cols = min(ncols, shape[0])
    rows = math.ceil(shape[0] / cols)
    assert width / height == pytest.approx(cols / rows, rel=0.35)


def test_image_grid_empty_and_out_of_range(tmp_path: Path) -> None:
    _check_png(
        plots.plot_image_grid(np.zeros((0, 1, 8, 8)), [], tmp_path / "empty.png"), min_side=20
    )
    wild = np.linspace(-1, 2, 2 * 64).reshape(2, 1, 8, 8)  # values outside [0, 1] are clipped
    _check_png(plots.plot_image_grid(wild, ["a"], tmp_path / "wild.png"))


def test_figure_to_base64_png(tmp_path: Path) -> None:
    path = plots.plot_per_class({"f1": [0.5]}, ["a"], tmp_path / "a.png")
    assert base64.b64decode(plots.figure_to_base64_png(path)) == path.read_bytes()
    assert base64.b64decode(plots.figure_to_base64_png(str(path)))[:8] == PNG_MAGIC
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    assert base64.b64decode(plots.figure_to_base64_png(fig))[:8] == PNG_MAGIC
