"""Run folders: where an experiment's config, logs, checkpoints, results and bundle live.

``runs/<config name>/<timestamp>/`` starts with ``config.yaml`` and ``environment.json``; the
trainer adds ``metrics.jsonl``, ``status.json``, ``checkpoints/`` and ``tb/``; evaluation adds
``eval.json`` and ``plots/``; export adds ``bundle/`` and ``export.json``; the report
``report.html``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from deepline.errors import DeeplineError

REPORTED_PACKAGES = (
    "torch",
    "numpy",
    "torchmetrics",
    "onnx",
    "onnxruntime",
    "safetensors",
    "pydantic",
    "scikit-learn",
)


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh, empty ``root/name/<UTC timestamp>`` folder."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / name / stamp
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{stamp}-{n}")


def check_run_dir(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise DeeplineError(
            f"'{path}' is not a run folder (no config.yaml); runs look like runs/<name>/<time>/"
        )
    return path


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(seed: int, num_threads: int) -> dict[str, Any]:
    packages = {}
    for name in REPORTED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    from deepline import __version__

    return {
        "python": platform.python_version(),
        "torch": packages.get("torch"),
        "deepline": __version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "seed": seed,
        "num_threads": num_threads,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
        "packages": packages,
    }
