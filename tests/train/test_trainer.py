"""The training loop: it learns, fires its events in order, and honours its options."""

from __future__ import annotations

import json
import math

import pytest
import torch

from deepline.config import ScheduleConfig, load_config
from deepline.training.events import EVENTS, Callback
from deepline.training.experiment import run_training
from deepline.training.optim import LRSchedule
from tests.conftest import tiny_config


def recorder_class():  # type: ignore[no-untyped-def]
    """A callback that records every event it sees."""
    methods: dict = {
        e: (lambda ev: lambda self, trainer: self.events.append(ev))(e) for e in EVENTS
    }
    methods["__init__"] = lambda self: setattr(self, "events", [])
    return type("EventRecorder", (Callback,), methods)


def test_learns_digits_and_writes_run_folder(tmp_path) -> None:
    cfg = load_config(tiny_config(epochs=3, schedule={"name": "onecycle"}, lr=0.02))
    exp = run_training(cfg, tmp_path)
    assert exp.trainer.logs["val/accuracy"] > 0.85
    run = exp.run_dir
    assert (run / "config.yaml").is_file() and (run / "environment.json").is_file()
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["epochs"] == 3
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch_lines = [r for r in records if "val/loss" in r]
    assert [r["epoch"] for r in epoch_lines] == [0, 1, 2]
    assert epoch_lines[-1]["val/loss"] < epoch_lines[0]["val/loss"]


def test_events_fire_in_order(tmp_path) -> None:
    rec = recorder_class()()
    cfg = load_config(tiny_config(epochs=1, batch_size=512, checkpoint={"keep_last": 1}))
    run_training(cfg, tmp_path, extra_callbacks=[rec])
    ev = rec.events
    assert ev[0] == "fit_start" and ev[-1] == "fit_end"
    assert ev[1:4] == ["epoch_start", "batch_start", "after_backward"]
    assert ev.count("step_end") == 3  # 1293 training digits / 512
    assert ev[-3:] == ["eval_end", "epoch_end", "fit_end"]


def test_max_steps_and_accumulation(tmp_path) -> None:
    rec = recorder_class()()
    cfg = load_config(tiny_config(epochs=None, max_steps=7, accumulate=2, batch_size=32))
    exp = run_training(cfg, tmp_path, extra_callbacks=[rec])
    assert exp.trainer.step == 7
    assert rec.events.count("batch_start") == 14  # every micro-batch
    assert rec.events.count("after_backward") == 7  # once per update, gradients complete
    assert "epoch_end" not in rec.events  # stopped inside the first epoch


def test_early_stopping_stops(tmp_path) -> None:
    cfg = load_config(
        tiny_config(
            epochs=50,
            lr=1e-9,
            early_stopping={
                "monitor": "val/accuracy",
                "mode": "max",
                "patience": 2,
                "min_delta": 0.5,
            },
        )
    )
    exp = run_training(cfg, tmp_path)
    assert exp.trainer.epoch == 3  # first epoch sets the best, two more without improvement
    assert "early stopping" in exp.trainer.stop_reason
    assert json.loads((exp.run_dir / "status.json").read_text())["status"] == "stopped"


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizers_and_clipping(tmp_path, optimizer: str) -> None:
    cfg = load_config(
        tiny_config(
            epochs=1,
            optimizer=optimizer,
            nesterov=optimizer == "sgd",
            grad_clip=1.0,
            lr=0.05 if optimizer == "sgd" else 0.003,
            precision="bf16",
        )
    )
    exp = run_training(cfg, tmp_path)
    assert math.isfinite(exp.trainer.logs["val/loss"])
    assert exp.trainer.logs["val/accuracy"] > 0.3


def test_schedules() -> None:
    steps = 100
    const = LRSchedule(ScheduleConfig(name="constant", warmup_steps=10), steps, 10)
    assert const(0) == pytest.approx(0.1) and const(50) == 1.0
    step = LRSchedule(ScheduleConfig(name="step", step_size=2, gamma=0.5), steps, 10)
    assert [step(s) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    cos = LRSchedule(ScheduleConfig(name="cosine", min_lr_ratio=0.1), steps, 10)
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.55) and cos(100) == pytest.approx(0.1)
    one = LRSchedule(ScheduleConfig(name="onecycle", pct_start=0.2), steps, 10)
    peak = max(range(steps), key=one)
    assert peak == 19 and one(0) < 0.1 and one(99) < 0.01


def test_tensorboard_events_written(tmp_path) -> None:
    cfg = load_config(tiny_config(epochs=1, tensorboard=True))
    exp = run_training(cfg, tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(exp.run_dir / "tb")).Reload()
    tags = acc.Tags()
    assert {"train/loss", "lr", "val/accuracy"} <= set(tags["scalars"])
    assert "val/mistakes" in tags["images"]


def test_deterministic_same_seed_same_weights(tmp_path) -> None:
    cfg = load_config(tiny_config(epochs=1, deterministic=True))
    a = run_training(cfg, tmp_path / "a").model.state_dict()
    b = run_training(cfg, tmp_path / "b").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
