"""Shared by the benchmarks that train shipped configs: a run folder trained through
``deepline train --run-dir`` (continued if it holds a stopped run, reused if finished), and
the line that says which machine measured."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def run_status(run_dir: Path) -> dict[str, Any]:
    """The run's ``status.json`` ({} before it exists)."""
    path = run_dir / "status.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def trained(config: str, run_dir: Path, data_dir: str, overrides: Sequence[str] = ()) -> dict:
    """Train, continue or reuse ``run_dir`` with ``--set`` ``overrides``; its status. A run
    that completed, or that a callback stopped (early stopping, a privacy budget), is reused."""
    if run_status(run_dir).get("status") not in ("completed", "stopped"):
        command = [sys.executable, "-m", "deepline", "train", config, "--run-dir", str(run_dir),
                   "--data-dir", data_dir]  # fmt: skip
        for override in overrides:
            command += ["--set", override]
        subprocess.run(command, check=True)
    return run_status(run_dir)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
