"""Smoke run of ``benchmarks/explanations.py --quick``: a LeNet on the digits, each image
method's randomisation and deletion checks, as the benchmark does for MNIST and the Transformer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_checks_every_method(tmp_path: Path) -> None:
    out_json = tmp_path / "explanations.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "explanations.py"), "--quick",
               "--runs", str(tmp_path / "runs"), "--out", str(out_json)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "Sanity checks of explanations" in out
    methods = json.loads(out_json.read_text())["digits_cnn"]
    assert set(methods) == {"saliency", "integrated_gradients", "gradcam"}
    for checks in methods.values():
        assert -1.0 <= checks["randomisation"]["spearman"] <= 1.0
        assert checks["deletion"]["auc_random"] > 0
