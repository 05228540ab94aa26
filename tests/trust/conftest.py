"""Small trained models the trust tests attack, calibrate and explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepline.config import load_config
from deepline.training.experiment import run_training
from tests.conftest import tiny_config

ROMEO = Path(__file__).parents[1] / "fixtures" / "romeo.txt"  # 7 KB of Romeo and Juliet


def digits_config(**train: Any) -> dict[str, Any]:
    """A LeNet on the bundled digits, about 93% accurate after 4 epochs (no dropout)."""
    raw = tiny_config(**{"epochs": 4, **train})
    raw["data"] = {"name": "digits", "val_fraction": 0.15}
    return raw


def romeo_config(**train: Any) -> dict[str, Any]:
    """A one-layer character GPT on the Romeo fixture (token inputs), two steps."""
    return {
        "name": "romeo",
        "data": {"name": "text-file", "path": str(ROMEO), "context": 8},
        "model": {"name": "gpt", "n_layer": 1, "n_head": 1, "n_embd": 8},
        "train": {"max_steps": 2, "steps_per_epoch": 2, "tensorboard": False, **train},
    }


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    return run_training(load_config(digits_config()), root).run_dir


@pytest.fixture(scope="session")
def language_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny character GPT on the Romeo fixture (token inputs)."""
    raw = {
        "name": "romeo",
        "seed": 0,
        "data": {"name": "text-file", "path": str(ROMEO), "context": 16},
        "model": {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0},
        "train": {"max_steps": 20, "steps_per_epoch": 10, "eval_batches": 2, "batch_size": 8,
                  "num_threads": 1, "tensorboard": False},
    }  # fmt: skip
    return run_training(load_config(raw), tmp_path_factory.mktemp("romeo")).run_dir


@pytest.fixture(scope="session")
def sequence_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small transformer on the digits' rows as sequences (attention to explain)."""
    raw = {
        "name": "rows",
        "seed": 0,
        "data": {"name": "sequential-digits"},
        "model": {"name": "transformer", "d_model": 16, "heads": 2, "layers": 2,
                  "dropout": 0.0},
        "task": {"name": "sequence_classification"},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.003, "num_threads": 1,
                  "tensorboard": False},
    }  # fmt: skip
    return run_training(load_config(raw), tmp_path_factory.mktemp("rows")).run_dir
