"""model.init_from: a run's weights start another model; a different architecture is a clear
error naming the first tensor that differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from deepline.config import load_config
from deepline.errors import ConfigError
from deepline.training.checkpoint import find_checkpoint, load_checkpoint
from deepline.training.experiment import build_experiment, run_training


def test_a_run_starts_from_another_runs_best_weights(tiny: dict[str, Any], tmp_path: Path) -> None:
    source = run_training(load_config(tiny), tmp_path / "runs").run_dir
    best, _ = load_checkpoint(find_checkpoint(source / "checkpoints", "best"))
    started = {**tiny, "model": {**tiny["model"], "init_from": str(source)}}
    (tmp_path / "b").mkdir()
    model = build_experiment(load_config(started), tmp_path / "b").model
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best["model"][name]), name


def test_a_mismatched_architecture_names_the_first_differing_tensor(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    source = run_training(load_config(tiny), tmp_path / "runs").run_dir
    wider = {**tiny, "model": {**tiny["model"], "channels": [8, 24], "init_from": str(source)}}
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match=r"tensor features\.4\.weight is \(16, 8, 3, 3\) there"):
        build_experiment(load_config(wider), tmp_path / "b")
    other = {**tiny, "model": {"name": "mlp", "init_from": str(source)}}
    with pytest.raises(ConfigError, match="shares no tensor with this model"):
        build_experiment(load_config(other), tmp_path / "b")
    missing = {**tiny, "model": {**tiny["model"], "init_from": str(tmp_path)}}
    with pytest.raises(ConfigError, match="is not a run folder"):
        build_experiment(load_config(missing), tmp_path / "b")
