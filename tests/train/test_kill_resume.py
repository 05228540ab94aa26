"""A training process killed with SIGKILL mid-epoch resumes to exactly the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from deepline.training.checkpoint import list_checkpoints
from tests.conftest import tiny_config
from tests.train.test_checkpoint import assert_same_weights, final_weights

TOTAL_STEPS = 6 * 41  # 6 epochs of 1293 digits in batches of 32


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepline", "train", *args]


def only_run(root: Path) -> Path:
    runs = [p for p in root.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    raw = tiny_config(epochs=6, batch_size=32, checkpoint={"every_steps": 10, "keep_last": 3})
    raw["model"].update(channels=[16, 32], hidden=64, dropout=0.25)
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    subprocess.run(
        train_cmd(str(config), "--runs-dir", str(tmp_path / "full")),
        check=True,
        env=env,
        capture_output=True,
    )
    full = only_run(tmp_path / "full")

    proc = subprocess.Popen(
        train_cmd(str(config), "--runs-dir", str(tmp_path / "killed")),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        runs = list((tmp_path / "killed").glob("*/*/checkpoints"))
        steps = [int(p.name.split("-")[1]) for p in list_checkpoints(runs[0])] if runs else []
        if steps and max(steps) >= 60:  # inside epoch 2 (epochs end at 41, 82, 123, ...)
            proc.send_signal(signal.SIGKILL)
            killed_at = max(steps)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert killed_at is not None and killed_at < TOTAL_STEPS
    run = only_run(tmp_path / "killed")

    resumed = subprocess.run(
        train_cmd("--resume", str(run)), env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert list_checkpoints(run / "checkpoints")[-1].name == f"step-{TOTAL_STEPS:08d}"
    assert_same_weights(final_weights(full), final_weights(run))
