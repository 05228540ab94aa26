"""Smoke run of ``benchmarks/adversarial.py --quick``: all three parts train (resumable runs
through ``deepline train --run-dir``), are attacked and printed, on the digits; a second call
reuses the finished runs. Accuracy targets are judged only on MNIST, in the benchmark itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_covers_every_part(tmp_path: Path) -> None:
    out_json = tmp_path / "adversarial.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "adversarial.py"), "--quick",
               "--runs", str(tmp_path / "runs"), "--out", str(out_json)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "FGSM on the standard CNN" in out and "Adversarially trained" in out, out[-4000:]
    summary = json.loads(out_json.read_text())
    for part in ("standard", "fast_fgsm", "pgd"):
        robustness = json.loads((tmp_path / "runs" / part / "robustness.json").read_text())
        assert robustness["n"] == 200
    assert summary["pgd"]["steps"] == summary["pgd"]["total_steps"] > 0
    assert set(summary["fast_fgsm"]["result"]["curves"]) == {"fgsm", "pgd"}
    again = subprocess.run([*command, "--parts", "pgd"], capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert again.returncode == 0 and "training" not in again.stdout, again.stdout[-2000:]
