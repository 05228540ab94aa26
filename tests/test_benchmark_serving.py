"""Smoke run of ``benchmarks/serving.py --quick``: real servers, real load, no errors.

Speed is not asserted (the machine is shared); the run must finish, print its tables and the
results block, and every request must be answered with 200.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deepline.config import load_config
from deepline.deploy.export import export_run
from deepline.training.experiment import run_training
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_run_answers_every_request(shared_data: Path, tmp_path: Path) -> None:
    config = tiny_config(epochs=1)
    config.update(name="mnist", data={"name": "mnist", "limit": 1000, "data_dir": str(shared_data)})
    run = run_training(load_config(config), tmp_path / "runs").run_dir
    bundle = export_run(run)["bundle"]
    script = ROOT / "benchmarks" / "serving.py"
    args = ["--quick", "--bundle", bundle, "--data-dir", str(shared_data)]
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "concurrency 1" in out and "concurrency 8" in out
    rows = re.findall(
        r"^\| (\d+) \| (\([ac]\)[^|]*) \| ([\d.]+) \| [\d.]+ \| [\d.]+ \| (\d+) \|", out, re.M
    )
    assert {(c, name.split()[0]) for c, name, _, _ in rows} == {
        ("1", "(a)"),
        ("8", "(a)"),
        ("1", "(c)"),
        ("8", "(c)"),
    }, out
    assert all(float(rate) > 0 and errors == "0" for _, _, rate, errors in rows), out
