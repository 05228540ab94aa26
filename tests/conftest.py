"""Shared fixtures: the real datasets beside the checkout, and small fast configs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
