"""The task contract fits tasks unlike the built-in ones: a task without labels (it learns to
reconstruct its inputs, as a GAN or an autoencoder has no targets) and a task without a dataset
(its data made by the task itself, as a policy's comes from an environment) register, train,
checkpoint and evaluate through the same trainer, with no change outside the test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from torch import nn

from deepline.config import DataConfig, ModelConfig, TaskConfig, load_config
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.registry import TASKS
from deepline.runs import read_json
from deepline.tasks.base import Evaluator, OutputSpec, Task
from deepline.training.experiment import run_training


class ReconstructConfig(TaskConfig):
    name: Literal["reconstruct"] = "reconstruct"


class MeanError(Evaluator):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[float] = []

    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.errors.append(float((outputs - x.flatten(1)).square().mean()))

    def compute(self) -> dict[str, float]:
        return {"loss": float(np.mean(self.errors))}


class Reconstruct(Task):
    """Learns to reproduce its inputs: no labels anywhere, and no catalog dataset either (its
    data is a random walk it makes itself, seeded)."""

    name = "reconstruct"

    @classmethod
    def load_data(cls, config: DataConfig) -> DataSplits:
        rng = np.random.default_rng(config.split_seed)
        walks = torch.from_numpy(rng.normal(size=(300, 16)).cumsum(1).astype(np.float32))
        bounds = ((0, 200), (200, 250), (250, 300))
        splits = [Split(walks[a:b], torch.zeros(b - a)) for a, b in bounds]  # no labels
        meta = DataMeta(
            name="random-walks", codec="features", input_shape=(16,), classes=[],
            input_scale=1.0, mean=[0.0] * 16, std=[1.0] * 16, fingerprint="0" * 64,
            sizes={"train": 200, "val": 50, "test": 50}, files=[],
            feature_names=[f"t{i}" for i in range(16)],
        )  # fmt: skip
        return DataSplits(*splits, meta)

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        return nn.Sequential(nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 16))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise AssertionError("a task without targets never gets this call")

    def step_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, _ = batch  # the loader's second tensor holds no labels
        return (model(x) - x).square().mean()

    def evaluator(self, keep_mistakes: int = 0) -> Evaluator:
        return MeanError()

    def signature(self) -> dict[str, Any]:
        spec = self.codec.input_spec()
        return {"inputs": [spec], "outputs": [{**spec, "name": "reconstruction"}]}

    def outputs(self) -> list[OutputSpec]:
        return [OutputSpec("reconstruction", "FP32", (-1, 16))]

    def named_outputs(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        return {"reconstruction": np.asarray(raw, dtype=np.float32)}

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        return named["reconstruction"].tolist()


@pytest.fixture
def registered() -> Iterator[None]:
    example = {"data": {"name": "digits"}, "model": {"name": "mlp"}}
    TASKS.register("reconstruct", config=ReconstructConfig, example=example)(Reconstruct)
    try:
        yield
    finally:
        TASKS.unregister("reconstruct")


def test_a_task_without_labels_or_a_dataset_trains(registered: None, tmp_path: Path) -> None:
    config = load_config(
        {
            "name": "walks",
            "data": {"name": "digits"},  # not read: the task makes its own data
            "task": {"name": "reconstruct"},
            "model": {"name": "mlp"},  # not built from the registry: the task builds its own
            "train": {"epochs": 20, "batch_size": 20, "lr": 0.02, "tensorboard": False,
                      "num_threads": 1},
        }
    )  # fmt: skip
    experiment = run_training(config, tmp_path)
    records = read_json(experiment.run_dir / "status.json")
    assert records["status"] == "completed" and records["steps"] == 200
    lines = (experiment.run_dir / "metrics.jsonl").read_text().splitlines()
    val = [record["val/loss"] for record in map(json.loads, lines) if "val/loss" in record]
    assert val[-1] < val[0] / 2  # it learned to reconstruct
    assert (experiment.run_dir / "data.json").is_file()
