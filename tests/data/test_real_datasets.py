"""The catalog's datasets, from the real files in ../shared/data (figures from its README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepline.config import DataConfig
from deepline.data import DataSplits, load_data

pytestmark = pytest.mark.data

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist_full(shared_data: Path) -> DataSplits:
    """MNIST with no validation split, so train is the whole official training set."""
    return load_data(DataConfig(name="mnist", data_dir=str(shared_data), val_fraction=0.0))


def counts(y: torch.Tensor) -> list[int]:
    return torch.bincount(y, minlength=10).tolist()


def pixels(x: torch.Tensor, b: DataSplits) -> torch.Tensor:
    """Undo the normalisation: values in [0, 1] again."""
    return x * b.meta.std[0] + b.meta.mean[0]


def test_mnist_shapes_counts_and_normalisation(mnist_full: DataSplits) -> None:
    b = mnist_full
    assert b.train.x.shape == (60000, 1, 28, 28) and b.test.x.shape == (10000, 1, 28, 28)
    assert b.meta.sizes == {"train": 60000, "val": 0, "test": 10000}
    assert counts(b.train.y) == MNIST_TRAIN_COUNTS and counts(b.test.y) == MNIST_TEST_COUNTS
    assert b.meta.mean[0] == pytest.approx(0.1307, abs=5e-5)  # 33.32 / 255
    assert b.meta.std[0] == pytest.approx(0.3081, abs=5e-5)
    assert b.meta.input_scale == 255.0 and b.meta.classes == [str(i) for i in range(10)]
    assert len(b.meta.files) == 4 and all(Path(f).is_file() for f in b.meta.files)
    # The test split is normalised with the training statistics, not its own.
    assert float(pixels(b.test.x, b).mean()) == pytest.approx(0.1325, abs=1e-3)
    assert abs(float(b.test.x.mean())) > 1e-3


def test_mnist_validation_split(data_env: Path, mnist_full: DataSplits) -> None:
    b = load_data(DataConfig(name="mnist", split_seed=3))
    assert b.meta.sizes == {"train": 54000, "val": 6000, "test": 10000}
    assert np.add(counts(b.train.y), counts(b.val.y)).tolist() == MNIST_TRAIN_COUNTS
    # Deterministic, and train and val are disjoint parts of the official training set.
    again = load_data(DataConfig(name="mnist", split_seed=3, limit=5000))
    assert again.meta.sizes["train"] == 5000  # limit caps train, and leaves val alone:
    assert torch.equal(again.val.y, b.val.y)
    assert torch.allclose(pixels(again.val.x, again), pixels(b.val.x, b), atol=1e-5)
    # Each val image is one of the official training images.
    official = pixels(mnist_full.train.x[:, 0, 14], mnist_full)  # row 14 tells them apart
    for image in pixels(b.val.x[:20, 0, 14], b):
        assert int(((official - image).abs().amax(dim=1) < 1e-4).sum()) >= 1
    assert b.meta.fingerprint != mnist_full.meta.fingerprint


def test_fashion_mnist(data_env: Path) -> None:
    b = load_data(DataConfig(name="fashion-mnist", limit=1000))
    assert b.meta.classes[0] == "T-shirt/top" and b.meta.classes[9] == "Ankle boot"
    assert len(b.meta.classes) == 10 and counts(b.test.y) == [1000] * 10
    assert b.meta.sizes == {"train": 1000, "val": 6000, "test": 10000}


def test_breastmnist_official_splits(data_env: Path) -> None:
    b = load_data(DataConfig(name="breastmnist", val_fraction=0.3))
    assert b.meta.sizes == {"train": 546, "val": 78, "test": 156}  # the file's own val split
    assert b.meta.classes == ["malignant", "normal/benign"]
    assert b.train.x.shape == (546, 1, 28, 28)
    assert torch.bincount(b.train.y).tolist() == [147, 399]
    assert torch.bincount(b.val.y).tolist() == [21, 57]
    assert torch.bincount(b.test.y).tolist() == [42, 114]
