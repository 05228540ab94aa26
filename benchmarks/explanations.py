"""Explanations: do they depend on the model? The two checks of every ``deepline explain``.

For each method, on the first 500 test images or sequences, with the predicted class as target:

- model randomisation (Adebayo et al. 2018): the mean Spearman rank correlation between the
  attribution magnitudes of the trained model and of the same network with every layer
  re-initialised; passes at <= 0.3;
- deletion (Petsiuk et al. 2018): accuracy as the most attributed pixels (or rows) are replaced
  by the baseline, 5% at a time; the area under that curve against the area for a random
  order; passes at a ratio <= 0.7.

Models: the MNIST CNN (``configs/mnist_lenet.yaml``; saliency, integrated gradients, Grad-CAM)
and the sequential-MNIST Transformer (``configs/smnist_transformer.yaml``, 4 epochs; saliency,
integrated gradients, attention rollout). Runs are trained through ``deepline train`` when
their folder does not hold a finished run.

Run: ``python benchmarks/explanations.py --data-dir ../shared/data`` (about 10 minutes on
2 cores with both trainings). ``--quick`` uses the digits and a few examples.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table

from deepline.evaluate.loading import load_trained
from deepline.trust.explanations import run_source, sanity_checks

console = Console()
MODELS = {  # name: (config, overrides, methods)
    "mnist_cnn": ("mnist_lenet", [], ("saliency", "integrated_gradients", "gradcam")),
    "smnist_transformer": (
        "smnist_transformer",
        ["train.epochs=4"],
        ("saliency", "integrated_gradients", "attention"),
    ),
}
QUICK = {"digits_cnn": ("digits_lenet", ["train.epochs=2"], MODELS["mnist_cnn"][2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/explanations"))
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="a LeNet on the digits, 50 examples")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    models = QUICK if args.quick else MODELS
    examples = 50 if args.quick else args.examples
    table = Table(title=f"Sanity checks of explanations, {examples} test examples each")
    columns = ("model", "method", "rank corr. with random model", "pass",
               "deletion AUC attributed", "AUC random", "ratio", "pass", "seconds")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "method") else "right")
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "examples": examples,
    }
    for name, (config, overrides, methods) in models.items():
        trained(config, args.runs / name, args.data_dir, overrides)
        run = load_trained(args.runs / name)
        source = run_source(run)
        results[name] = {}
        for method in methods:
            start = time.perf_counter()
            checks = sanity_checks(source, [method], examples)[method]
            seconds = time.perf_counter() - start
            r, d = checks["randomisation"], checks["deletion"]
            table.add_row(
                name, method, f"{r['spearman']:.3f}", "yes" if r["passed"] else "no",
                f"{d['auc_attributed']:.3f}", f"{d['auc_random']:.3f}", f"{d['ratio']:.3f}",
                "yes" if d["passed"] else "no", f"{seconds:.1f}",
            )  # fmt: skip
            d = {k: v for k, v in d.items() if k not in ("curves", "shares")}
            results[name][method] = {**checks, "deletion": d, "seconds": seconds}
    console.print(table)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    console.print(results["date"], results["machine"])


if __name__ == "__main__":
    main()
