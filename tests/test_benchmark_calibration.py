"""Smoke run of ``benchmarks/calibration.py --quick``: a LeNet on the digits is trained,
calibrated on its validation split and scored on its test split, as the benchmark does for
MNIST, Fashion-MNIST and BreastMNIST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_calibrates_and_reports(tmp_path: Path) -> None:
    out_json = tmp_path / "calibration.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "calibration.py"), "--quick",
               "--runs", str(tmp_path / "runs"), "--out", str(out_json)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "ECE (15 bins) on the test split" in out
    digits = json.loads(out_json.read_text())["digits"]
    assert digits["after"]["accuracy"] == digits["before"]["accuracy"]
    assert digits["temperature"] > 0 and digits["n_fit"] > 0
    assert (tmp_path / "runs" / "digits" / "calibration.json").is_file()
