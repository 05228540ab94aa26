"""Shared fixtures: the real datasets beside the checkout, and small fast configs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # one thread: the tests must give the same numbers in every process they start
    torch.set_num_threads(1)
    if SHARED_DATA.is_dir():
        os.environ.setdefault("DEEPLINE_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"the real datasets are not at {SHARED_DATA}")
    return SHARED_DATA


def tiny_config(**train: Any) -> dict[str, Any]:
    """A seconds-long digits experiment with a small CNN."""
    return {
        "name": "tiny",
        "seed": 0,
        "data": {"name": "digits", "augment": {"shift": 1}},
        "model": {"name": "lenet", "channels": [8, 16], "hidden": 32, "dropout": 0.0},
        "train": {
            "epochs": 2,
            "batch_size": 64,
            "lr": 0.01,
            "num_threads": 1,
            "log_every_steps": 5,
            "tensorboard": False,
            **train,
        },
    }


@pytest.fixture
def tiny() -> dict[str, Any]:
    return tiny_config()


def people_table(path: Path, rows: int = 600, seed: int = 0) -> Path:
    """A CSV of people (score, hours, group a/b, label) whose label depends on their group."""
    rng = np.random.default_rng(seed)
    lines = ["score,hours,group,label"]
    for _ in range(rows):
        group = str(rng.choice(["a", "b"]))
        score = rng.normal(1.0 if group == "a" else 0.0, 1.0)
        lines.append(f"{score:.3f},{rng.integers(10, 60)},{group},{int(score > 0.5)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def people_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP trained on ``people_table`` (group declared sensitive, seen by the model)."""
    from deepline.config import load_config
    from deepline.training.experiment import run_training

    folder = tmp_path_factory.mktemp("people")
    raw = {"name": "people", "seed": 0,
           "data": {"name": "table", "path": str(people_table(folder / "people.csv")),
                    "sensitive": ["group"], "val_fraction": 0.25},
           "model": {"name": "tabular_mlp", "hidden": [16]},
           "train": {"epochs": 5, "batch_size": 32, "num_threads": 1,
                     "tensorboard": False}}  # fmt: skip
    return run_training(load_config(raw), folder / "runs").run_dir


def movie_log(folder: Path, users: int = 40, items: int = 30, seed: int = 0) -> tuple[Path, Path]:
    """An interaction log (CSV: user, item, rating, timestamp) where each user walks through
    the items in steps of their own, and the items' titles (one not ASCII) and genres."""
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,rating,timestamp"]
    for user in range(1, users + 1):
        start, stride = int(rng.integers(1, items + 1)), 1 + user % 3
        for step in range(int(rng.integers(5, 15))):
            item = (start + step * stride - 1) % items + 1
            lines.append(f"{user},{item},{int(rng.integers(1, 6))},{880000000 + step * 60}")
    folder.mkdir(parents=True, exist_ok=True)
    log, catalogue = folder / "log.csv", folder / "items.csv"
    log.write_text("\n".join(lines) + "\n")
    titles = [
        f"{i},{'Amélie' if i == 7 else f'Film {i}'} (1995),Drama" for i in range(1, items + 1)
    ]
    catalogue.write_text("item_id,title,genres\n" + "\n".join(titles) + "\n", encoding="utf-8")
    return log, catalogue


@pytest.fixture(scope="session")
def recommender_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SASRec trained a few epochs on ``movie_log``, exported."""
    from deepline.config import load_config
    from deepline.deploy.export import export_run
    from deepline.training.experiment import run_training

    root = tmp_path_factory.mktemp("recommender")
    log, catalogue = movie_log(root / "data")
    raw = {"name": "movies", "seed": 0,
           "data": {"name": "interactions", "path": str(log), "items_path": str(catalogue),
                    "context": 8},
           "task": {"name": "sequential_recommendation"},
           "model": {"name": "sasrec", "d_model": 16, "heads": 2, "layers": 1},
           "train": {"epochs": 3, "batch_size": 16, "num_threads": 1,
                     "tensorboard": False}}  # fmt: skip
    run_dir = run_training(load_config(raw), root / "runs").run_dir
    export_run(run_dir)
    return run_dir / "bundle"


@pytest.fixture(scope="session")
def segmenter_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small U-Net trained a few steps on bright rectangles, exported."""
    from PIL import Image

    from deepline.config import load_config
    from deepline.deploy.export import export_run
    from deepline.training.experiment import run_training

    root = tmp_path_factory.mktemp("segmentation")
    folder = root / "pairs"
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(24):
        picture = rng.integers(0, 60, (30, 34, 3), dtype=np.uint8)
        mask = np.zeros((30, 34), np.uint8)
        top, left = rng.integers(0, 18, 2)
        mask[top : top + 10, left : left + 12] = 255
        picture[mask > 0] = 230
        Image.fromarray(picture).save(folder / "images" / f"{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i}.png")
    raw = {"name": "polyps", "seed": 0,
           "data": {"name": "image-masks", "path": str(folder), "image_size": [32, 32]},
           "model": {"name": "unet", "features": [4, 4, 8, 8, 8, 4]},
           "train": {"max_steps": 6, "batch_size": 8, "num_threads": 1,
                     "tensorboard": False}}  # fmt: skip
    run_dir = run_training(load_config(raw), root / "runs").run_dir
    export_run(run_dir)
    return run_dir / "bundle"


@pytest.fixture(scope="session")
def detector_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CenterNet trained a few steps on the VOC sample's bright boxes, exported."""
    from deepline.config import load_config
    from deepline.data.datasets.detection import voc_sample
    from deepline.deploy.export import export_run
    from deepline.training.experiment import run_training

    root = tmp_path_factory.mktemp("detection")
    voc_sample(root, root="mine")
    raw = {"name": "cells", "seed": 0,
           "data": {"name": "voc", "path": str(root / "mine"), "image_size": [32, 32]},
           "model": {"name": "centernet", "width": 4, "blocks": [1, 1, 1, 1], "head": 8},
           "task": {"name": "detection", "score_threshold": 0.05, "max_detections": 10},
           "train": {"max_steps": 4, "batch_size": 4, "num_threads": 1,
                     "tensorboard": False}}  # fmt: skip
    run_dir = run_training(load_config(raw), root / "runs").run_dir
    export_run(run_dir)
    return run_dir / "bundle"


def gan_config(conditional: bool = True, **train: Any) -> dict[str, Any]:
    """A seconds-long conditional DCGAN of the 8x8 digits."""
    raw = tiny_config(**{"epochs": 2, "batch_size": 64, "lr": 0.001, "betas": [0.5, 0.999],
                         **train})  # fmt: skip
    raw["data"] = {"name": "digits"}
    raw["task"] = {"name": "image_generation", "latent_dim": 8, "conditional": conditional,
                   "samples_per_class": 2}  # fmt: skip
    raw["model"] = {"name": "dcgan", "width": 4}
    raw["export"] = {"formats": ["onnx"]}
    return raw


@pytest.fixture(scope="session")
def generator_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional GAN's bundle (two epochs on the digits)."""
    from deepline.config import load_config
    from deepline.deploy.export import export_run
    from deepline.training.experiment import run_training

    experiment = run_training(load_config(gan_config()), tmp_path_factory.mktemp("gan"))
    export_run(experiment.run_dir)
    return experiment.run_dir / "bundle"
