"""MNIST from 100 labels: FixMatch over three draws of the labelled images, next to
supervised training on the same 100 labels and plain pseudo-labelling (``configs/
mnist_fixmatch.yaml``, through ``deepline train``; each run resumes when rerun).

Anchors: Ladder Networks (Rasmus et al. 2015) 98.94% and the improved GAN (Salimans et al.
2016) 99.07% test accuracy from 100 MNIST labels; the target is a mean of at least 99.0% over
the three draws. Every run is scored on the 10,000 test images with its last checkpoint (the
moving average of its weights): the labelled validation split chooses nothing.

SimCLR pre-trains the same CNN on the unlabelled images (no labels), then a linear probe (only
the output layer trains) and a fine-tuning start from it on the 100 labels.

GAN augmentation: a conditional DCGAN (``configs/mnist_cgan.yaml``) trained on the same 100
labelled images only (it sees no other label; its last checkpoint is used, so the labelled
validation images choose nothing), then supervised training on the 100 real images and 5,000
generated ones (500 of each class, ``data.synthetic``).

Run: ``python benchmarks/few_labels.py --data-dir ../shared/data [--parts fixmatch0,...]``
(hours on 2 cores). ``--quick`` trains 40 steps of each.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
from pathlib import Path

from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table

from deepline.deploy.export import export_run
from deepline.evaluate.evaluate import evaluate_run

console = Console(width=140)
TARGET = 0.990
CONFIG = "mnist_fixmatch"
FASHION = ["data.name=fashion-mnist", "data.labels_per_class=40",
           "data.augment={shift: 2, flip: true}"]  # fmt: skip
SUPERVISED = ["train.method=null", "train.max_steps=2000", "train.lr=0.01"]
RUNS: dict[str, list[str]] = {
    "fixmatch0": ["data.labels_seed=0"],
    "fixmatch1": ["data.labels_seed=1"],
    "fixmatch2": ["data.labels_seed=2"],
    "supervised0": ["data.labels_seed=0", *SUPERVISED],
    "pseudo_label0": ["data.labels_seed=0", "train.method.name=pseudo_label"],
    # contrastive pre-training on the unlabelled images (labels unused), then the 100 labels
    "simclr0": [
        "data.labels_seed=0",
        "train.method={name: simclr, temperature: 0.5}",
        "train.max_steps=5000",
        "train.lr=0.1",
        "train.checkpoint={monitor: val/knn_accuracy, mode: max}",
    ],
    "probe0": [
        "data.labels_seed=0",
        *SUPERVISED,
        "model.init_from={simclr0}",
        "model.freeze=[features, classifier.2]",
    ],
    "finetune0": ["data.labels_seed=0", *SUPERVISED, "model.init_from={simclr0}"],
    # Fashion-MNIST with 40 labels a class (400 in all), weak augmentation with flips
    "fashion_fixmatch0": [*FASHION],
    "fashion_supervised0": [*FASHION, *SUPERVISED],
    # a conditional GAN of the 100 labelled images, whose images then join them
    "cgan0": [
        "data.labels_seed=0",
        "train.epochs=null",
        "train.max_steps=4000",
        "train.steps_per_epoch=500",
        "eval.checkpoint=last",
    ],
    "gan_aug0": [
        "data.labels_seed=0",
        *SUPERVISED,
        "data.synthetic={generator: {cgan0}/bundle, per_class: 500}",
    ],
}
CONFIGS = {"cgan0": "mnist_cgan"}  # runs of another config than mnist_fixmatch's
PRETRAINED = {"probe0": "simclr0", "finetune0": "simclr0", "gan_aug0": "cgan0"}  # starts from
METHODS = {"fixmatch": "FixMatch", "supervised": "supervised only",
           "fashion_fixmatch": "Fashion-MNIST, 40 a class: FixMatch",
           "fashion_supervised": "Fashion-MNIST, 40 a class: supervised only",
           "pseudo_label": "pseudo-labels", "simclr": "SimCLR pre-training (kNN accuracy)",
           "probe": "SimCLR + linear probe", "finetune": "SimCLR + fine-tuning",
           "cgan": "conditional GAN of the 100 (FD, pixels)",
           "gan_aug": "GAN augmentation (+5,000 generated)"}  # fmt: skip
QUICK = ["train.max_steps=40", "train.steps_per_epoch=20"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/few_labels"))
    parser.add_argument("--parts", default=",".join(RUNS), help="comma-separated runs")
    parser.add_argument("--quick", action="store_true", help="40 steps of each")
    args = parser.parse_args()
    table = Table(title=f"MNIST from 100 labels ({machine()})")
    for column in ("run", "method", "labelled draw", "steps", "training", "accuracy"):
        table.add_column(column, justify="left" if column in ("run", "method") else "right")
    fixmatch = []
    for name in [p for p in args.parts.split(",") if p]:
        suffix = "-quick" if args.quick else ""
        run_dir = args.runs / (name + suffix)
        overrides = [*RUNS[name], *(QUICK if args.quick else [])]
        if name in PRETRAINED:  # the run folder it starts from
            source = (args.runs / (PRETRAINED[name] + suffix)).resolve()
            if name.startswith("gan_aug") and not (source / "bundle").is_dir():
                export_run(source, data_dir=args.data_dir)
            overrides = [o.replace("{" + PRETRAINED[name] + "}", str(source)) for o in overrides]
        config = CONFIGS.get(name, CONFIG)
        if config != CONFIG:  # the label budget of the rest, in another config
            overrides = ["data.labels_per_class=10", *overrides]
        status = trained(config, run_dir, args.data_dir, overrides)
        if name.startswith("simclr"):  # no classifier yet: how well its features sort
            accuracy = status.get("last", {}).get("val/knn_accuracy", float("nan"))
        elif name.startswith("cgan"):  # a generator: its distance to the test images
            accuracy = evaluate_run(run_dir, data_dir=args.data_dir)["metrics"]["fd"]
        else:
            accuracy = evaluate_run(run_dir, data_dir=args.data_dir)["metrics"]["accuracy"]
        if name.startswith("fixmatch"):  # the MNIST-100 draws
            fixmatch.append(accuracy)
        method = METHODS[name.rstrip("0123456789")]
        minutes = f"{status.get('wall_time_s', 0) / 60:.0f} min"
        table.add_row(name, method, name[-1], str(status.get("steps")), minutes, f"{accuracy:.4f}")
    console.print(table)
    if fixmatch:
        mean = statistics.mean(fixmatch)
        verdict = "met" if mean >= TARGET and len(fixmatch) == 3 else "not met"
        console.print(f"FixMatch mean over {len(fixmatch)} draws: {mean:.4f} (target >= {TARGET}:"
                      f" {verdict})")  # fmt: skip
    console.print(f"{datetime.date.today()} {machine()}")


if __name__ == "__main__":
    main()
