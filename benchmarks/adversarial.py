"""Adversarial MNIST: a standard CNN under FGSM, and two adversarially trained ones under PGD.

Three parts, each a shipped config trained through ``deepline train`` (resumable: a run folder
that exists is continued, a finished one reused) and attacked on the 10,000 test images:

- ``standard``: ``configs/mnist_lenet.yaml`` under FGSM at the epsilons of PyTorch's FGSM
  tutorial, next to the tutorial's published accuracies (its own LeNet, 98.1% -> 8.69% at 0.3).
- ``fast_fgsm``: ``configs/mnist_fast_fgsm.yaml`` (Wong, Rice and Kolter 2020); target at
  eps 0.3 under PGD of 50 steps of 0.01 with 10 random restarts: >= 88.8% (theirs: 88.77%).
- ``pgd``: ``configs/mnist_pgd_at.yaml`` (Madry et al. 2018); same attack, target >= 89.6%
  (theirs: 89.62%). Hours of training on 2 cores: start it in the background with
  ``deepline train mnist_pgd_at --run-dir RUNS/pgd`` and read it here with ``--partial``.

Both trained models must also keep >= 98% clean accuracy. Training times are the trainer's own
clock (kept across resumes).

Run: ``python benchmarks/adversarial.py --data-dir ../shared/data`` (about an hour on
2 cores without the PGD training). ``--quick`` trains and attacks on the small digits data.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
from typing import Any

import torch
from resumable_runs import machine, run_status, trained
from rich.console import Console
from rich.table import Table

from deepline.evaluate.loading import load_trained
from deepline.report import write_report
from deepline.trust.robustness import AttackPlan, robustness_curves, write_robustness

console = Console()
TUTORIAL = {  # eps: the tutorial's published test accuracy under FGSM
    0.0: 0.981, 0.05: 0.9426, 0.1: 0.851, 0.15: 0.6826, 0.2: 0.4301, 0.25: 0.2082, 0.3: 0.0869,
}  # fmt: skip
PARTS = {  # part: (config, target robust accuracy at eps 0.3, anchor, the anchor's number)
    "standard": ("mnist_lenet", None, "PyTorch FGSM tutorial", TUTORIAL[0.3]),
    "fast_fgsm": ("mnist_fast_fgsm", 0.888, "Wong et al. 2020", 0.8877),
    "pgd": ("mnist_pgd_at", 0.896, "Madry et al. 2018", 0.8962),
}
CLEAN_TARGET = 0.98
STRONG = AttackPlan(("fgsm", "pgd"), (0.3,), steps=50, alpha=0.01, restarts=10)
QUICK = ["data.name=digits", "train.epochs=3"]


def attack(run_dir: Path, plan: AttackPlan, data_dir: str, limit: int | None) -> dict[str, Any]:
    run = load_trained(run_dir, None, data_dir)  # the config's eval.checkpoint
    result = robustness_curves(run, plan, "test", limit)
    write_robustness(run_dir, result)
    write_report(run_dir)
    return result


def accuracy(result: dict[str, Any], attack_name: str, eps: float) -> float:
    points = result["curves"][attack_name]
    return next(p["metrics"]["accuracy"] for p in points if abs(p["eps"] - eps) < 1e-9)


def standard_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"FGSM on the standard CNN ({result['n']} test images)")
    for column in ("eps", "deepline mnist_lenet", "PyTorch tutorial LeNet", "seconds"):
        table.add_column(column, justify="right")
    for point in result["curves"]["fgsm"]:
        eps = point["eps"]
        table.add_row(f"{eps:g}", f"{point['metrics']['accuracy']:.2%}",
                      f"{TUTORIAL[eps]:.2%}", f"{point['seconds']:.1f}")  # fmt: skip
    return table


def robust_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Adversarially trained: test accuracy, PGD-50 (step 0.01, 10 restarts)")
    for column in ("config", "steps trained", "train time", "clean", "FGSM 0.3", "PGD 0.3",
                   "target", "anchor", "pass"):  # fmt: skip
        table.add_column(column, justify="right")
    for row in rows:
        r = row["result"]
        table.add_row(
            row["config"],
            f"{row['steps']}/{row['total_steps']}",
            f"{row['train_seconds'] / 60:.1f} min",
            f"{accuracy(r, 'pgd', 0.0):.2%}",
            f"{accuracy(r, 'fgsm', 0.3):.2%}",
            f"{accuracy(r, 'pgd', 0.3):.2%}",
            f">= {row['target']:.1%}",
            f"{row['anchor_value']:.2%} ({row['anchor']})",
            "yes" if row["passed"] else "no",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/adversarial"))
    parser.add_argument("--parts", default="standard,fast_fgsm,pgd")
    parser.add_argument(
        "--partial", action="store_true",
        help="attack the last checkpoint of runs still training instead of training them",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="digits, 3 epochs, 200 examples")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    torch.manual_seed(0)
    limit = 200 if args.quick else None
    plan = AttackPlan(("fgsm", "pgd"), STRONG.eps, steps=5, restarts=2) if args.quick else STRONG
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {unknown}; allowed: {', '.join(PARTS)}")
    summary: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
    }
    rows = []
    for part in parts:
        config, target, anchor, anchor_value = PARTS[part]
        run_dir = args.runs / part
        if not (args.partial and (run_dir / "checkpoints").exists()):
            trained(config, run_dir, args.data_dir, QUICK if args.quick else [])
        state = run_status(run_dir)
        if part == "standard":
            eps = tuple(e for e in TUTORIAL if e) if not args.quick else (0.1, 0.3)
            fgsm = AttackPlan(("fgsm",), eps)
            result = attack(run_dir, fgsm, args.data_dir, limit)
            summary[part] = result
            console.print(standard_table(result))
            continue
        result = attack(run_dir, plan, args.data_dir, limit)
        clean = accuracy(result, "pgd", 0.0)
        robust = accuracy(result, "pgd", 0.3)
        row = {
            "config": config, "result": result, "target": target,
            "anchor": anchor, "anchor_value": anchor_value,
            "steps": state.get("steps"), "total_steps": state.get("total_steps"),
            "train_seconds": state.get("wall_time_s", 0.0),
            "passed": robust >= target and clean >= CLEAN_TARGET,
        }  # fmt: skip
        rows.append(row)
        summary[part] = row
        for warning in result["warnings"]:
            console.print(f"[yellow]warning:[/] {config}: {warning}", highlight=False)
    if rows:
        console.print(robust_table(rows))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2, default=str))
    console.print(summary["date"], summary["machine"])


if __name__ == "__main__":
    main()
