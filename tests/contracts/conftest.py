"""What every contract test builds on: the small experiment each registered component names.

A model or task registers an ``example`` (data, model and task settings); a catalog entry
writes a ``sample`` of its files; a codec names the dataset whose data it reads. These helpers
turn them into data, runs and bundles, with no dataset file from outside the repository.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from deepline.config import DataConfig, ExperimentConfig, load_config
from deepline.data import DataSplits, read_data
from deepline.registry import DATASETS
from deepline.tasks import task_class
from deepline.training.experiment import run_training

# a few optimizer steps on one thread: contracts check that things work, not how well
QUICK_TRAIN = {
    "max_steps": 3,
    "batch_size": 8,
    "steps_per_epoch": 3,
    "eval_batches": 1,
    "num_threads": 1,
    "tensorboard": False,
    "log_every_steps": 1,
}


def sample_data(config: DataConfig, folder: Path) -> tuple[DataConfig, DataSplits]:
    """The catalog entry's own sample files, read by its reader (no download, no checksum:
    the reader receives the files as the catalog would after verifying them)."""
    folder.mkdir(parents=True, exist_ok=True)
    sample = DATASETS.meta(config.name)["sample"](folder)
    config = config.model_copy(update=sample.overrides)
    return config, read_data(config, sample.files)


def example_data(config: ExperimentConfig, folder: Path) -> tuple[DataConfig, DataSplits]:
    """The data of an example: its catalog entry's sample files, or what its task makes
    without a dataset (a policy's environment)."""
    if config.data.name in DATASETS:
        return sample_data(config.data, folder)
    return config.data, task_class(config.task.name).load_data(config.data)


def example_config(example: dict[str, Any], name: str, kind: str) -> ExperimentConfig:
    """The example of the registered ``kind`` ("model" or "task") ``name`` as a quick config."""
    raw = copy.deepcopy(example)
    raw["name"] = name
    raw.setdefault(kind, {})["name"] = name
    raw["train"] = {**QUICK_TRAIN, **raw.get("train", {})}
    raw["eval"] = {"batch_size": 16, **raw.get("eval", {})}
    raw["export"] = {"formats": ["onnx"], **raw.get("export", {})}
    return load_config(raw)


def example_run(
    example: dict[str, Any], name: str, kind: str, root: Path
) -> tuple[ExperimentConfig, Path]:
    """Train the example for a few steps in ``root``: (its config, the run folder)."""
    config = example_config(example, name, kind)
    data_config, data = example_data(config, root / "data")
    config = config.model_copy(update={"data": data_config})
    experiment = run_training(config, root / "runs", data=data)
    return config, experiment.run_dir
