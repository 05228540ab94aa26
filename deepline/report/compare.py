"""List run folders and compare runs: config differences, metrics side by side, curves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deepline.runs import read_json


@dataclass
class RunSummary:
    path: Path
    name: str
    started: str
    task: str
    model: str
    status: str
    metric: str
    value: float | None
    config: dict[str, Any]


def find_runs(root: Path) -> list[Path]:
    """Run folders (those holding a config.yaml) below ``root``, oldest first."""
    if (root / "config.yaml").is_file():
        return [root]
    return sorted((p.parent for p in root.rglob("config.yaml")), key=lambda p: p.stat().st_mtime)


def summarize(path: Path) -> RunSummary:
    config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    status = read_json(path / "status.json", {}) or {}
    env = read_json(path / "environment.json", {}) or {}
    evaluation = read_json(path / "eval.json", {}) or {}
    monitor = (config.get("train", {}).get("checkpoint") or {}).get("monitor", "val/loss")
    if evaluation.get("metrics"):  # a test-set number when there is one
        metric = f"{evaluation.get('split', 'test')}/accuracy"
        value = evaluation["metrics"].get("accuracy")
    else:
        metric, value = monitor, (status.get("last") or {}).get(monitor)
    return RunSummary(
        path=path,
        name=str(config.get("name", path.parent.name)),
        started=str(env.get("started_at", ""))[:19].replace("T", " "),
        task=str((config.get("task") or {}).get("name", "")),
        model=str((config.get("model") or {}).get("name", "")),
        status=str(status.get("status", "unknown")),
        metric=metric,
        value=value,
        config=config,
    )


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(runs: list[RunSummary]) -> dict[str, list[Any]]:
    """Dotted config keys whose values are not the same in every run."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat))
    return {
        k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1
    }


def final_metrics(run: RunSummary) -> dict[str, float]:
    status = read_json(run.path / "status.json", {}) or {}
    evaluation = read_json(run.path / "eval.json", {}) or {}
    split = evaluation.get("split", "test")
    return {
        **(status.get("last") or {}),
        **{f"{split}/{k}": v for k, v in (evaluation.get("metrics") or {}).items()},
    }


def plot_curves(runs: list[RunSummary], path: Path, metric: str = "val/loss") -> Path:
    """``metric`` per step for every run on one chart."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for run in runs:
        lines = (
            (run.path / "metrics.jsonl").read_text().splitlines()
            if (run.path / "metrics.jsonl").is_file()
            else []
        )
        points = [(r["step"], r[metric]) for r in map(json.loads, lines) if metric in r]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=f"{run.name} ({run.path.name})")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
