"""Real bundles served over real HTTP on 127.0.0.1, shared by the serving tests.

The repository holds model ``lenet`` (digits at 28x28) in versions 1 and 2 (the same bundle
twice) and ``digits`` (a second, 8x8 model), so every test sees several models and versions at
once. Everything trains on data that ships with deepline or the tests: no dataset files needed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from deepline.config import DataConfig, load_config
from deepline.data import load_data
from deepline.deploy.export import export_run
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from deepline.training.experiment import run_training
from tests.conftest import tiny_config


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 image (H, W) or (H, W, C) as PNG file bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


TOKEN = "s3cret"
ROMEO = Path(__file__).parents[1] / "fixtures" / "romeo.txt"  # 7 KB of Romeo and Juliet
SMALL_LENET = {"name": "lenet", "channels": [8, 16], "hidden": 32, "dropout": 0.0}


def _train_and_export(config: dict, root: Path) -> Path:
    run = run_training(load_config(config), root / "runs").run_dir
    return Path(export_run(run)["bundle"])


@pytest.fixture(scope="session")
def lenet_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LeNet trained on the bundled digits resized to 28x28, MNIST's size (about 97%
    test accuracy): the serving tests' main model, with no dataset file needed."""
    config = tiny_config(epochs=6, lr=0.003, optimizer="adamw", batch_size=64)
    config.update(name="lenet", model=SMALL_LENET, data={"name": "digits", "image_size": [28, 28]})
    return _train_and_export(config, tmp_path_factory.mktemp("lenet"))


@pytest.fixture(scope="session")
def diabetes_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLP regression on the bundled diabetes data (features in, progression out)."""
    config = tiny_config(epochs=10, lr=0.003, batch_size=32)
    config.update(name="diabetes", model={"name": "mlp", "hidden": [16]}, data={"name": "diabetes"})
    return _train_and_export(config, tmp_path_factory.mktemp("diabetes"))


@pytest.fixture(scope="session")
def mnist_bundle(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LeNet trained briefly on 6,000 MNIST images (about 95% test accuracy), for the
    tests about MNIST itself (hand-drawn digits)."""
    config = tiny_config(epochs=2, lr=0.003, optimizer="adamw", batch_size=64)
    config.update(
        name="mnist",
        model=SMALL_LENET,
        data={"name": "mnist", "limit": 6000, "data_dir": str(shared_data)},
    )
    return _train_and_export(config, tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="session")
def digits_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_and_export(tiny_config(epochs=1), tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def repository(
    lenet_bundle: Path, digits_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("repository")
    add_bundle(lenet_bundle, root, "lenet")
    add_bundle(lenet_bundle, root, "lenet")
    add_bundle(digits_bundle, root, "digits")
    return root


@pytest.fixture(scope="session")
def server(repository: Path) -> Iterator[BackgroundServer]:
    settings = ServeSettings(max_body_bytes=1024 * 1024, max_batch_size=16, max_delay_ms=5)
    with BackgroundServer(create_app(repository, settings)) as running:
        yield running


@pytest.fixture(scope="module")
def tokened(repository: Path) -> Iterator[BackgroundServer]:
    app = create_app(repository, ServeSettings(token=TOKEN, max_batch_size=1))
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The digits test split (359 images the models never trained on) at 28x28 as whole-number
    pixels 0..255, uint8 (N, 28, 28), and their labels."""
    data = load_data(DataConfig(name="digits", image_size=(28, 28), normalize=False))
    pixels = (data.test.x[:, 0].numpy() * 255).round().astype(np.uint8)
    return pixels, data.test.y.numpy()


@pytest.fixture(scope="session")
def sample_digits() -> tuple[np.ndarray, np.ndarray]:
    """32 test digits (uint8, (32, 28, 28)) and their labels."""
    pixels, labels = digits_test_split()
    return pixels[:32], labels[:32]


REVIEWS = [
    ("a fine warm film", "pos"),
    ("dull and far too long", "neg"),
    ("great fun", "pos"),
    ("boring", "neg"),
]


@pytest.fixture(scope="session")
def text_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few-step character GPT on a few KB of Shakespeare and a text classifier on a small
    CSV."""
    root = tmp_path_factory.mktemp("kserve-text")
    lm = {
        "name": "gpt",
        "seed": 0,
        "data": {"name": "text-file", "path": str(ROMEO), "context": 16},
        "task": {"name": "language_modelling", "sample_prompt": "A", "sample_tokens": 4},
        "model": {"name": "gpt", "n_layer": 1, "n_head": 1, "n_embd": 16},
        "train": {
            "max_steps": 2,
            "steps_per_epoch": 2,
            "eval_batches": 1,
            "batch_size": 8,
            "num_threads": 1,
            "tensorboard": False,
        },
        "eval": {"split": "val", "batch_size": 8},
    }
    path = root / "reviews.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("text", "label"))
        writer.writerows((f"{REVIEWS[i % 4][0]} {i}", REVIEWS[i % 4][1]) for i in range(40))
    classifier = {
        "name": "reviews",
        "seed": 0,
        "task": {"name": "sequence_classification"},
        "data": {"name": "text-csv", "path": str(path), "context": 16},
        "model": {"name": "transformer", "d_model": 16, "heads": 1, "layers": 1, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 16, "num_threads": 1, "tensorboard": False},
    }
    return {
        "gpt": _train_and_export(lm, root / "lm"),
        "reviews": _train_and_export(classifier, root / "tc"),
    }
