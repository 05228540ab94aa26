"""Kvasir-SEG polyp segmentation: mean Dice per image on the 120 held-out images, scored at
each image's own size.

The shipped config (``kvasir_resunet``, or ``--config``) is trained through ``deepline train``
(a run folder that exists is continued: training is resumable), its best checkpoint by
validation Dice (88 pairs carved from the 880 training ones) is exported, and the exported
ONNX bundle answers each of the 120 test images from its JPEG file, as ``deepline predict``
does: the mask comes back at the image's own size. It is compared with the image's own mask
(pixels > 127 are polyp) with MONAI's Dice and IoU. The paper's ResUNet baseline has
Dice 0.7877 (Jha et al. 2020); the target here is mean Dice >= 0.80.

Run: ``python benchmarks/segmentation.py --data-dir ../shared/data`` (hours on 2 cores;
rerun it to continue). ``--quick`` trains 2 epochs at 64x64.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table

from deepline.config import DataConfig
from deepline.data import get_spec
from deepline.data.fetch import ensure_files
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.evaluate.evaluate import evaluate_trained
from deepline.evaluate.loading import load_trained

console = Console(width=140)
TARGET = 0.80
ANCHOR = 0.7877  # Kvasir-SEG paper, ResUNet
QUICK = ["train.epochs=2", "data.image_size=[64,64]"]


def own_size_scores(predictor: Predictor, data_dir: str) -> dict[str, list[float]]:
    """Dice and IoU of each held-out image, its mask predicted from its JPEG at its own size."""
    from monai.metrics import compute_dice, compute_iou

    files = ensure_files(get_spec("kvasir-seg"), data_dir)
    ids = [i for i in files["Data-split/val.txt"].read_text().split() if i]
    scores: dict[str, list[float]] = {"dice": [], "iou": []}
    for i in ids:
        picture, mask = files[f"Kvasir-SEG/images/{i}.jpg"], files[f"Kvasir-SEG/masks/{i}.jpg"]
        answer = predictor.predict([picture.read_bytes()])[0]
        predicted = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask_png"]))))
        truth = np.asarray(Image.open(mask).convert("L")) > 127
        assert predicted.shape == truth.shape, (i, predicted.shape, truth.shape)
        p = torch.from_numpy(predicted > 0)[None, None].float()
        t = torch.from_numpy(truth)[None, None].float()
        scores["dice"].append(float(compute_dice(p, t, ignore_empty=False)))
        scores["iou"].append(float(compute_iou(p, t, ignore_empty=False)))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/segmentation"))
    parser.add_argument("--config", default="kvasir_resunet")
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    parser.add_argument("--quick", action="store_true", help="2 epochs at 64x64")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    overrides = [*args.set, *(QUICK if args.quick else [])]
    run_dir = args.runs / (args.config + ("-quick" if args.quick else ""))
    status = trained(args.config, run_dir, args.data_dir, overrides)
    run = load_trained(run_dir, "best", args.data_dir)
    at_model = evaluate_trained(run, "test")["metrics"]
    export_run(run_dir, "best", args.data_dir, formats=["onnx"])
    start = time.perf_counter()
    scores = own_size_scores(Predictor(run_dir / "bundle", "onnx"), args.data_dir)
    seconds = time.perf_counter() - start
    dice, iou = statistics.mean(scores["dice"]), statistics.mean(scores["iou"])
    size = DataConfig(name="kvasir-seg", image_size=run.config.data.image_size).image_size

    table = Table(title="Kvasir-SEG, 120 held-out images: mean Dice and IoU per image")
    for column in ("model", "trained at", "epochs", "training", "Dice (own size)",
                   "IoU (own size)", "Dice (model size)", "target", "anchor"):  # fmt: skip
        table.add_column(column, justify="left" if column == "model" else "right")
    table.add_row(
        f"{args.config} ({run.config.model.name})", f"{size[0]}x{size[1]}",
        str(status.get("epochs")), f"{status.get('wall_time_s', 0) / 60:.0f} min",
        f"{dice:.4f}", f"{iou:.4f}", f"{at_model['dice']:.4f}", f">= {TARGET}",
        f"{ANCHOR} (ResUNet)",
    )  # fmt: skip
    console.print(table)
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "machine": machine(),
        "config": args.config, "overrides": overrides, "status": status,
        "dice": dice, "iou": iou, "dice_median": statistics.median(scores["dice"]),
        "at_model_size": at_model, "per_image": scores, "scoring_seconds": seconds,
        "target": TARGET, "met": dice >= TARGET,
    }  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    console.print(result["date"], result["machine"])


if __name__ == "__main__":
    main()
