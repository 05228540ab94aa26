"""GANs on MNIST: a DCGAN and a class-conditional DCGAN (``configs/mnist_dcgan.yaml``,
``configs/mnist_cgan.yaml``), their Fréchet distance against training time, sample grids, and
the served generator checked against offline generation.

There are no Inception weights to download here, so the Fréchet distance is computed on the
features of our own MNIST classifier (``configs/mnist_lenet.yaml``, trained first: the input
of its output layer, 128 numbers): it is *not* the published FID and is not comparable with
it. For scale, the table also gives the distance between two sets of real images (the 10,000
test images against the 5,000 validation images). ``class accuracy``: how often that
classifier reads a conditional image as the class it was asked for.

Run: ``python benchmarks/gan.py --data-dir ../shared/data [--parts classifier,cgan,dcgan]
[--figure fd.png]`` (an hour or more on 2 cores; each run resumes when rerun). ``--quick``
trains 30 steps of each.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import torch
from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table

from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.evaluate.evaluate import evaluate_run

console = Console(width=140)
GANS = {"cgan": "mnist_cgan", "dcgan": "mnist_dcgan"}
QUICK = ["train.epochs=null", "train.max_steps=30"]


def classifier_bundle(runs: Path, data_dir: str, quick: bool) -> Path:
    """The MNIST classifier whose features measure the generators (trained and exported once)."""
    run_dir = runs / ("classifier-quick" if quick else "classifier")
    trained("mnist_lenet", run_dir, data_dir, QUICK if quick else [])
    if not (run_dir / "bundle" / "bundle.json").is_file():
        export_run(run_dir, data_dir=data_dir)
    return (run_dir / "bundle").resolve()


def served_matches_offline(bundle: Path, conditional: bool) -> bool:
    """The server's PNGs for seeds 0..3 (and class 7) are byte for byte the offline ones."""
    from deepline.serve.app import create_app
    from deepline.serve.repository import add_bundle
    from deepline.serve.server import BackgroundServer
    from deepline.serve.settings import ServeSettings

    request: dict[str, Any] = {"seed": 0, "count": 4, **({"class": "7"} if conditional else {})}
    offline = Predictor(bundle).predict(
        [{"seed": i, **({"class": "7"} if conditional else {})} for i in range(4)]
    )
    with tempfile.TemporaryDirectory() as repository:
        add_bundle(bundle, Path(repository), "gan")
        with BackgroundServer(create_app(Path(repository), ServeSettings())) as server:
            answer = httpx.post(f"{server.url}/generate/gan", json=request, timeout=60).json()
    return [image["png"] for image in answer["images"]] == [a["png"] for a in offline]


def real_against_real(bundle: Path, data_dir: str, features: Path) -> float:
    """The Fréchet distance between the test and validation images (the floor of the scale)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from deepline.evaluate.loading import load_trained

    run = load_trained(bundle.parent, data_dir=data_dir)
    task = run.task
    task.config = task.config.model_copy(update={"features": str(features)})
    fd = FrechetInceptionDistance(feature=task.feature_model)
    for split, real in (("test", True), ("val", False)):
        x = getattr(run.data, split).x
        for i in range(0, len(x), 1000):
            fd.update(task.to_unit_from_data(x[i : i + 1000]), real=real)
    return float(fd.compute())


def fd_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(training minutes, validation FD) after each epoch."""
    path = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(r["time"] / 60, r["val/fd"]) for r in records if "val/fd" in r]


def save_grid(run_dir: Path, path: Path) -> None:
    """The last epoch's sample grid as a PNG, 3x enlarged."""
    from PIL import Image

    if not (run_dir / "samples.jsonl").exists():  # no epoch ended (--quick)
        return
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    grid = Path(tempfile.mkstemp(suffix=".png")[1])
    grid.write_bytes(base64.b64decode(json.loads(lines[-1])["png"]))
    picture = Image.open(grid)
    picture.resize((picture.width * 3, picture.height * 3), Image.Resampling.NEAREST).save(path)


def plot(curves: dict[str, list[tuple[float, float]]], floor: float, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.0), dpi=120)
    ax = fig.add_subplot()
    for name, points in curves.items():
        ax.plot([t for t, _ in points], [f for _, f in points], marker="o", label=name)
    ax.axhline(floor, color="grey", linestyle="--", linewidth=0.8, label="real vs real")
    ax.set_yscale("log")
    ax.set_xlabel("training time (minutes, 2 CPU cores)")
    ax.set_ylabel("Fréchet distance (LeNet features, validation)")
    ax.set_title("MNIST GANs: distance to real images against training time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/gan"))
    parser.add_argument("--parts", default=",".join(GANS), help="comma-separated GANs")
    parser.add_argument("--figure", type=Path, default=None, help="write FD against time here")
    parser.add_argument("--quick", action="store_true", help="30 steps of each")
    args = parser.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    features = classifier_bundle(args.runs, args.data_dir, args.quick)
    table = Table(title=f"MNIST GANs ({machine()})")
    for column in ("run", "epochs", "training", "test FD", "class accuracy", "served = offline"):
        table.add_column(column, justify="left" if column == "run" else "right")
    curves, floor = {}, float("nan")
    for name in [p for p in args.parts.split(",") if p]:
        run_dir = args.runs / (name + ("-quick" if args.quick else ""))
        overrides = [f"task.features={features}", *(QUICK if args.quick else [])]
        status = trained(GANS[name], run_dir, args.data_dir, overrides)
        metrics = evaluate_run(run_dir, data_dir=args.data_dir)["metrics"]
        if not (run_dir / "bundle" / "bundle.json").is_file():
            export_run(run_dir, data_dir=args.data_dir)
        same = served_matches_offline(run_dir / "bundle", name == "cgan")
        if floor != floor:  # once: the same real images for every generator
            floor = real_against_real(run_dir / "bundle", args.data_dir, features)
        curves[name] = fd_curve(run_dir)
        if args.figure:
            save_grid(run_dir, args.figure.with_name(f"{args.figure.stem}_{name}_samples.png"))
        accuracy = metrics.get("class_accuracy")
        table.add_row(
            name, str(status.get("epochs")), f"{status.get('wall_time_s', 0) / 60:.0f} min",
            f"{metrics['fd']:.2f}", "-" if accuracy is None else f"{accuracy:.4f}",
            "yes" if same else "NO",
        )  # fmt: skip
    table.add_row("real test vs real val", "-", "-", f"{floor:.2f}", "-", "-")
    console.print(table)
    if args.figure and curves:
        plot(curves, floor, args.figure)
        console.print(f"wrote {args.figure}")
    console.print(f"{datetime.date.today()} {machine()}")


if __name__ == "__main__":
    main()
