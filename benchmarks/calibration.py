"""Calibration: expected calibration error (15 bins) before and after temperature scaling.

Three classifiers trained from shipped configs through ``deepline train`` (a run folder that
exists is continued, a finished one reused), then ``calibrate_run`` exactly as
``deepline calibrate RUN`` does it: the temperature is fitted on the validation split, ECE and
MCE are measured on the test split.

- MNIST, ``configs/mnist_lenet.yaml``: target ECE after scaling <= 0.5%;
- Fashion-MNIST and BreastMNIST (MedMNIST v2, ultrasound, 2 classes; 546 training images) as
  the shipped recipes train them (``fashion_resnet``; ``mnist_lenet`` on BreastMNIST, 30
  epochs): reported. Their dropout, augmentation and weight decay leave them nearly calibrated
  already, so there is little for a temperature to fix;
- the same two datasets trained the way Guo et al. (2017) found networks overconfident: no
  dropout, no augmentation, no weight decay, trained far past the best validation loss
  (LeNet, 30 epochs on Fashion-MNIST, 100 on BreastMNIST): target ECE at least 30% lower.

Run: ``python benchmarks/calibration.py --data-dir ../shared/data`` (about 30 minutes on 2 cores,
most of it the ResNet). ``--quick`` runs one small model on the digits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
from typing import Any

from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table

from deepline.evaluate.loading import load_trained
from deepline.report import write_report
from deepline.trust.calibration import calibrate_run, write_calibration

console = Console()
MNIST_TARGET = 0.005  # ECE after scaling, absolute
REDUCTION_TARGET = 0.30  # relative drop of ECE for the others
OVERFIT = ["model.dropout=0", "data.augment.shift=0", "train.weight_decay=0",
           "train.schedule.name=constant", "train.checkpoint.monitor=val/loss",
           "eval.checkpoint=last"]  # fmt: skip
SUITE = {  # name: (config, overrides, target: ("at most", value), ("lower by", share) or None)
    "mnist": ("mnist_lenet", [], ("at most", MNIST_TARGET)),
    "fashion-mnist": ("fashion_resnet", [], None),
    "breastmnist": (
        "mnist_lenet", ["data.name=breastmnist", "train.epochs=30", "train.log_every_steps=10"],
        None,
    ),
    "fashion-mnist-overfit": (
        "mnist_lenet", ["data.name=fashion-mnist", "train.epochs=30", *OVERFIT],
        ("lower by", REDUCTION_TARGET),
    ),
    "breastmnist-overfit": (
        "mnist_lenet",
        ["data.name=breastmnist", "train.epochs=100", "train.log_every_steps=10", *OVERFIT],
        ("lower by", REDUCTION_TARGET),
    ),
}  # fmt: skip
QUICK = {"digits": ("digits_lenet", ["train.epochs=3"], ("lower by", 0.0))}


def passed(target: tuple[str, float] | None, before: float, after: float) -> bool | None:
    if target is None:
        return None
    kind, value = target
    return after <= value if kind == "at most" else after <= (1 - value) * before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/calibration"))
    parser.add_argument("--only", default=None, help="comma-separated datasets of the suite")
    parser.add_argument("--quick", action="store_true", help="one LeNet on the digits")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    suite = QUICK if args.quick else SUITE
    names = [n.strip() for n in args.only.split(",")] if args.only else list(suite)
    unknown = sorted(set(names) - set(suite))
    if unknown:
        parser.error(f"--only: unknown {unknown}; allowed: {', '.join(suite)}")
    table = Table(title="ECE (15 bins) on the test split, temperature fitted on validation")
    for column in ("dataset", "config", "test acc.", "T", "ECE before", "ECE after", "change",
                   "MCE before", "MCE after", "target", "pass"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("dataset", "config") else "right")
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
    }
    for name in names:
        config, overrides, target = suite[name]
        run_dir = args.runs / name
        status = trained(config, run_dir, args.data_dir, overrides)
        run = load_trained(run_dir, None, args.data_dir)
        result = calibrate_run(run, "test")
        write_calibration(run_dir, result)
        write_report(run_dir)
        before, after = result["before"]["ece"], result["after"]["ece"]
        ok = passed(target, before, after)
        table.add_row(
            name, config, f"{result['after']['accuracy']:.2%}", f"{result['temperature']:.3f}",
            f"{before:.2%}", f"{after:.2%}", f"{(after - before) / max(before, 1e-12):+.0%}",
            f"{result['before']['mce']:.2%}", f"{result['after']['mce']:.2%}",
            f"{target[0]} {target[1]:.1%}" if target else "-",
            "-" if ok is None else "yes" if ok else "no",
        )  # fmt: skip
        results[name] = {"config": config, "overrides": overrides, "passed": ok,
                         "train_seconds": status.get("wall_time_s"), **result}  # fmt: skip
    console.print(table)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    console.print(results["date"], results["machine"])


if __name__ == "__main__":
    main()
