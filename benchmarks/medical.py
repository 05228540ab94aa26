"""BreastMNIST (MedMNIST v2): test accuracy and AUC, mean of 3 seeds, as MedMNIST reports them.

The shipped config (``breastmnist_resnet``, or ``--config``) is trained once per seed through
``deepline train`` (resumable) on the official 546 training images; the checkpoint is the one
the config's monitor picks on the official 78 validation images; the official 156 test images
score it. ACC is the share of test images whose most likely class is right (for two classes:
probability of the second above 0.5, as MedMNIST's ``getACC``), AUC the area under the ROC
curve of the second class's probability (MedMNIST's ``getAUC``; for two classes it equals our
macro one-vs-rest AUROC).

Anchors, MedMNIST v2 (Yang et al. 2023), BreastMNIST test: ResNet-18 (28) 0.863 / 0.901,
ResNet-18 (224) 0.833 / 0.891, Google AutoML Vision 0.861 / 0.919. Target: ACC >= 0.88 and
AUC >= 0.92, mean of 3 seeds.

Run: ``python benchmarks/medical.py --data-dir ../shared/data`` (a few minutes per seed on
2 cores). ``--quick`` trains 3 epochs per seed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from deepline.evaluate.loading import load_trained, predict_batches

console = Console(width=140)
TARGET = {"acc": 0.88, "auc": 0.92}
ANCHORS = {"ResNet-18 (28)": (0.863, 0.901), "ResNet-18 (224)": (0.833, 0.891),
           "Google AutoML Vision": (0.861, 0.919)}  # fmt: skip


def medmnist_scores(run_dir: Path, data_dir: str) -> dict[str, float]:
    """ACC and AUC on the test split, computed as MedMNIST's evaluator does."""
    run = load_trained(run_dir, None, data_dir)
    test = run.data.test
    with torch.no_grad():
        probabilities = predict_batches(run.model, test.x).softmax(-1).numpy()
    truth = test.y.numpy()
    positive = probabilities[:, -1]
    return {"acc": float(np.mean((positive > 0.5) == truth)),
            "auc": float(roc_auc_score(truth, positive))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/medical"))
    parser.add_argument("--config", default="breastmnist_resnet")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    parser.add_argument("--quick", action="store_true", help="3 epochs per seed")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    overrides = [*args.set, *(["train.epochs=3"] if args.quick else [])]
    table = Table(title="BreastMNIST test split (156 images), checkpoint chosen on validation")
    for column in ("seed", "ACC", "AUC", "training"):
        table.add_column(column, justify="right")
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        run_dir = args.runs / f"{args.config}{'-quick' if args.quick else ''}-seed{seed}"
        status = trained(args.config, run_dir, args.data_dir, [*overrides, f"seed={seed}"])
        scores = medmnist_scores(run_dir, args.data_dir)
        per_seed[seed] = {**scores, "train_seconds": status.get("wall_time_s")}
        table.add_row(str(seed), f"{scores['acc']:.3f}", f"{scores['auc']:.3f}",
                      f"{(status.get('wall_time_s') or 0) / 60:.1f} min")  # fmt: skip
    mean = {k: statistics.mean(s[k] for s in per_seed.values()) for k in ("acc", "auc")}
    met = all(mean[k] >= TARGET[k] for k in TARGET)
    table.add_row("mean", f"{mean['acc']:.3f}", f"{mean['auc']:.3f}", "", style="bold")
    for name, (acc, auc) in ANCHORS.items():
        table.add_row(name, f"{acc:.3f}", f"{auc:.3f}", "(MedMNIST v2)", style="dim")
    console.print(table)
    console.print(f"target ACC >= {TARGET['acc']} and AUC >= {TARGET['auc']}: "
                  f"{'met' if met else 'not met'}")  # fmt: skip
    result = {"date": datetime.date.today().isoformat(), "machine": machine(),
              "config": args.config, "overrides": overrides, "seeds": per_seed, "mean": mean,
              "target": TARGET, "met": met}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
