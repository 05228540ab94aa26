"""Checkpoints: atomic, verified, pruned, and a resume that continues bit for bit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepline.config import load_config
from deepline.errors import CheckpointError, DeeplineError
from deepline.training.checkpoint import (
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)
from deepline.training.experiment import run_training
from tests.conftest import tiny_config


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(list_checkpoints(run_dir / "checkpoints")[-1] / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=key)


def test_save_load_round_trip_and_atomic_names(tmp_path: Path) -> None:
    tensors = {"model": {"w": torch.randn(3, 4)}, "state": {"rng": torch.arange(5)}}
    path = save_checkpoint(tmp_path, 7, tensors, {"hello": [1, 2]})
    assert path.name == "step-00000007" and not list(tmp_path.glob(".tmp-*"))
    loaded, state = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], tensors["model"]["w"]) and state["hello"] == [1, 2]


def test_truncated_checkpoint_detected_and_skipped(tmp_path: Path) -> None:
    for step in (1, 2):
        save_checkpoint(tmp_path, step, {"model": {"w": torch.full((64,), float(step))}}, {})
    weights = tmp_path / "step-00000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated after the fact
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "step-00000002")
    with pytest.warns(UserWarning, match="falling back to the previous checkpoint"):
        path, tensors, _ = load_latest(tmp_path)
    assert path.name == "step-00000001" and float(tensors["model"]["w"][0]) == 1.0


def test_interrupted_write_leaves_previous_intact(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"model": {"w": torch.ones(2)}}, {})
    partial = tmp_path / ".tmp-step-00000002-123"  # what a kill during a save leaves
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"garbage")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000001"]
    assert load_latest(tmp_path)[0].name == "step-00000001"


def test_keeps_last_k_and_best(tmp_path: Path) -> None:
    cfg = load_config(
        tiny_config(
            epochs=4,
            lr=0.01,
            checkpoint={"keep_last": 1, "monitor": "val/accuracy", "mode": "max"},
        )
    )
    exp = run_training(cfg, tmp_path)
    names = [p.name for p in list_checkpoints(exp.run_dir / "checkpoints")]
    best = find_checkpoint(exp.run_dir / "checkpoints", "best", "max")
    assert names[-1] == "step-00000084" and best.name in names and len(names) <= 2
    scores = json.loads((best / "state.json").read_text())
    assert scores["monitor_value"] == max(
        json.loads(line)["val/accuracy"]
        for line in (exp.run_dir / "metrics.jsonl").read_text().splitlines()
        if "val/accuracy" in line
    )


@pytest.mark.parametrize(
    ("resume_at", "method"),
    [("epoch", {}), ("mid-epoch", {}), ("mid-epoch", {"mixup": {"alpha": 0.4}})],
    ids=["epoch", "mid-epoch", "mixup-mid-epoch"],
)
def test_resume_is_exact(tmp_path: Path, resume_at: str, method: dict) -> None:
    """Training 3 epochs in one go == training, stopping at a checkpoint, and resuming."""
    every = None if resume_at == "epoch" else 8
    raw = tiny_config(
        epochs=3,
        checkpoint={"every_steps": every, "keep_last": 50},
        schedule={"name": "cosine"},
        **method,
    )
    raw["model"]["dropout"] = 0.2  # dropout and augmentation both draw random numbers
    full = run_training(load_config(raw), tmp_path / "full")

    part = run_training(load_config(raw), tmp_path / "part")
    checkpoints = list_checkpoints(part.run_dir / "checkpoints")
    cut = checkpoints[1] if resume_at == "epoch" else checkpoints[3]  # step 42, or 32 (mid-epoch)
    for later in checkpoints[checkpoints.index(cut) + 1 :]:
        shutil.rmtree(later)
    resumed = run_training(None, run_dir=part.run_dir)
    assert resumed.trainer.step == full.trainer.step == 63
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))
    assert resumed.trainer.logs["val/loss"] == full.trainer.logs["val/loss"]


def test_tied_weights_round_trip(tmp_path: Path) -> None:
    """A tensor under two names (tied embedding and output layer) is written once, read twice."""
    shared = torch.randn(5, 3)
    tensors = {"model": {"embed.weight": shared, "head.weight": shared, "bias": torch.zeros(3)}}
    path = save_checkpoint(tmp_path, 1, tensors, {})
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded["model"]["head.weight"], shared)
    assert torch.equal(loaded["model"]["embed.weight"], shared)


def test_moving_average_is_validated_kept_and_resumed_exactly(tmp_path: Path) -> None:
    """With train.ema the checkpoint holds the average beside the trained weights; validation,
    evaluation and export read the average; a resume continues it exactly."""
    from deepline.evaluate.loading import load_trained

    raw = tiny_config(epochs=3, checkpoint={"keep_last": 50}, ema=0.9)
    full = run_training(load_config(raw), tmp_path / "full")
    part = run_training(load_config(raw), tmp_path / "part")
    checkpoints = list_checkpoints(part.run_dir / "checkpoints")
    for later in checkpoints[2:]:
        shutil.rmtree(later)
    resumed = run_training(None, run_dir=part.run_dir)
    assert resumed.trainer.logs["val/loss"] == full.trainer.logs["val/loss"]
    last = list_checkpoints(full.run_dir / "checkpoints")[-1]
    tensors, state = load_checkpoint(last)
    again, _ = load_checkpoint(list_checkpoints(part.run_dir / "checkpoints")[-1])
    assert_same_weights(tensors["ema"], again["ema"])
    assert state["ema_updates"] == full.trainer.step == 63
    differs = [
        k for k in tensors["model"] if not torch.equal(tensors["model"][k], tensors["ema"][k])
    ]
    assert differs  # the average is not the trained weights ...
    run = load_trained(full.run_dir, "last")
    loaded = run.model.state_dict()
    assert all(torch.equal(loaded[k], tensors["ema"][k]) for k in loaded)  # ... and is used
    assert full.trainer.eval_model is full.trainer.ema.module
    plain = run_training(load_config(tiny_config(epochs=1)), tmp_path / "plain")
    config = plain.run_dir / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2").replace(
        "ema: null", "ema: 0.9"))  # fmt: skip
    with pytest.raises(DeeplineError, match=r"train\.ema: this checkpoint was written without"):
        run_training(None, run_dir=plain.run_dir)
