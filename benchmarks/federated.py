"""Federated MNIST as McMahan et al. 2017 ran it: their CNN, 100 clients of 600 images,
10 clients a round, E = 5, B = 10 (``configs/mnist_fedavg.yaml``), trained by ``deepline
federate`` on Flower's simulation engine.

Runs (each its own run folder, resumed from its last round when rerun):
- ``iid``: FedAvg on IID clients; the paper needs 20 rounds to reach 99% test accuracy
  (``iid-lr0.05``: the same with the clients' lr halved);
- ``shards``: FedAvg on the pathological non-IID split (two shards of one label per
  client); the paper needs 229 rounds;
- ``fedprox``, ``fedadam``: the same non-IID split with FedProx (mu 0.01) and FedAdam (server
  lr 10^-2.5, tau 10^-3, as Reddi et al. 2021 tuned for a CNN), first 50 rounds;
- ``dp``, ``dp-weak``: FedAvg on IID clients with client-level DP (server-side fixed
  clipping to norm 1, noise multiplier 1.0 and 0.1), 30 rounds.

The table gives the rounds each run needed to reach 99% test accuracy, its accuracy at rounds
10, 25 and 50 and its wall time; the figure plots test accuracy against rounds.

Run: ``python benchmarks/federated.py --data-dir ../shared/data [--parts iid,shards]``
(hours on 2 cores; rerun to continue). ``--quick`` does 2 rounds of each on 10 clients.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from resumable_runs import machine, run_status
from rich.console import Console
from rich.table import Table

console = Console(width=150)
TARGET = 0.99
CONFIG = "mnist_fedavg"
RUNS: dict[str, tuple[list[str], int, str]] = {  # name: (overrides, rounds, the paper's rounds)
    "iid": ([], 30, "20"),
    "iid-lr0.05": (["train.lr=0.05"], 30, "20"),
    "shards": (["federated.partition.scheme=shards"], 300, "229"),
    "fedprox": (["federated.partition.scheme=shards", "federated.strategy=fedprox",
                 "federated.proximal_mu=0.01"], 50, "-"),
    "fedadam": (["federated.partition.scheme=shards", "federated.strategy=fedadam",
                 "federated.server_lr=0.00316", "federated.server_tau=0.001"], 50, "-"),
    "dp": (["federated.privacy.noise_multiplier=1.0", "federated.privacy.clipping_norm=1.0",
            "federated.privacy.delta=0.001"], 30, "-"),
    "dp-weak": (["federated.privacy.noise_multiplier=0.1", "federated.privacy.clipping_norm=1.0",
                 "federated.privacy.delta=0.001"], 30, "-"),
}  # fmt: skip
QUICK = ["federated.clients=10", "federated.clients_per_round=3", "federated.local_epochs=1"]


def federated(name: str, run_dir: Path, data_dir: str, rounds: int, extra: list[str]) -> dict:
    """Run (or continue, or reuse) one federated run; its status."""
    overrides, _, _ = RUNS[name]
    if run_status(run_dir).get("status") != "completed":
        command = [sys.executable, "-m", "deepline", "federate", CONFIG, "--run-dir",
                   str(run_dir), "--data-dir", data_dir, "--cpus", "1",
                   "--set", f"federated.rounds={rounds}"]  # fmt: skip
        for override in [*overrides, *extra]:
            command += ["--set", override]
        subprocess.run(command, check=True)
    return run_status(run_dir)


def curve(run_dir: Path) -> list[tuple[int, float]]:
    """(round, test accuracy) of every round logged."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [(r["round"], r["test/accuracy"]) for r in records if "test/accuracy" in r]


def epsilon(run_dir: Path) -> float | None:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    values = [json.loads(x).get("privacy/epsilon") for x in lines if x.strip()]
    return values[-1] if values and values[-1] is not None else None


def rounds_to(points: list[tuple[int, float]], target: float) -> int | None:
    return next((r for r, acc in points if acc >= target), None)


def plot(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.2), dpi=120)
    ax = fig.add_subplot()
    for name, points in curves.items():
        ax.plot([r for r, _ in points], [a for _, a in points], label=name, linewidth=1.2)
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(0.9, 1.0)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_title("MNIST CNN, 100 clients, 10 a round, E=5, B=10")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/federated"))
    parser.add_argument("--parts", default=",".join(RUNS), help="comma-separated runs")
    parser.add_argument("--rounds", type=int, default=None, help="cap every run's rounds")
    parser.add_argument("--report-only", action="store_true", help="table of what is there")
    parser.add_argument("--quick", action="store_true", help="2 rounds on 10 clients")
    parser.add_argument("--figure", type=Path, default=None, help="write the accuracy plot")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    table = Table(title=f"FedAvg on MNIST, McMahan et al.'s CNN ({machine()})")
    for column in ("run", "rounds done", "rounds to 99%", "paper", "acc@10", "acc@25", "acc@50",
                   "last", "epsilon", "wall time"):  # fmt: skip
        table.add_column(column, justify="left" if column == "run" else "right")
    curves = {}
    for name in parts:
        _, rounds, paper = RUNS[name]
        rounds = 2 if args.quick else min(rounds, args.rounds or rounds)
        run_dir = args.runs / (name + ("-quick" if args.quick else ""))
        status = (
            run_status(run_dir)
            if args.report_only
            else federated(name, run_dir, args.data_dir, rounds, QUICK if args.quick else [])
        )
        if not status:
            continue
        points = curve(run_dir)
        curves[name] = points
        at = dict(points)
        eps = epsilon(run_dir)
        reached = rounds_to(points, TARGET)
        table.add_row(
            name, str(status.get("epochs", 0)), str(reached) if reached else "not yet", paper,
            *(f"{at[r]:.4f}" if r in at else "-" for r in (10, 25, 50)),
            f"{points[-1][1]:.4f}" if points else "-",
            f"{eps:.2f}" if eps is not None else "-",
            f"{status.get('wall_time_s', 0) / 60:.0f} min",
        )  # fmt: skip
    console.print(table)
    console.print(f"{datetime.date.today()} {machine()}")
    if args.figure and curves:
        plot(curves, args.figure)
        console.print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
