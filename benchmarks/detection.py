"""Object detection from scratch: BCCD blood cells and KITTI-tiny driving scenes, COCO mAP on
each test split.

Each shipped config (``bccd_centernet``, ``kitti_centernet``) is trained through ``deepline
train`` (a run folder that exists is continued: training is resumable); its best checkpoint by
validation mAP@0.5 is evaluated on the test split with COCO's bbox evaluation
(faster-coco-eval): mAP@0.5, mAP@[.5:.95] and AP@0.5 per class. One KITTI test frame with its
detections drawn is written next to RESULTS.md (KITTI: CC BY-NC-SA 3.0, Geiger et al. 2012).

Targets: BCCD mAP@0.5 >= 0.80 (stretch 0.85; public YOLOv5s results, from COCO-pretrained
weights, are about 0.9); KITTI-tiny reported as it is, with 40 training images.

Run: ``python benchmarks/detection.py --data-dir ../shared/data`` (hours on 2 cores; rerun it
to continue). ``--quick`` trains 2 epochs; ``--only bccd`` or ``kitti``.
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

from deepline.data import get_spec
from deepline.data.fetch import ensure_files
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.evaluate.evaluate import evaluate_trained
from deepline.evaluate.loading import load_trained

console = Console(width=140)
SUITE = {"bccd": ("bccd_centernet", 0.80), "kitti": ("kitti_centernet", None)}
PICTURE = Path(__file__).parent / "figures" / "kitti_tiny_detections.jpg"
KITTI_FRAME = "kitti_tiny/training/image_2/000068.jpeg"  # a test frame: cars and cyclists


def draw_kitti(run_dir: Path, data_dir: str) -> Path:
    """One KITTI-tiny test frame with the exported model's detections drawn over it."""
    export_run(run_dir, "best", data_dir, formats=["onnx"])
    predictor = Predictor(run_dir / "bundle", "onnx")
    frame = ensure_files(get_spec("kitti-tiny"), data_dir)[KITTI_FRAME]
    answer = predictor.predict([frame.read_bytes()])[0]
    drawn = predictor.task.draw_answer(frame, answer, PICTURE)
    assert drawn is not None
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/detection"))
    parser.add_argument("--only", choices=list(SUITE), default=None)
    parser.add_argument("--quick", action="store_true", help="2 epochs each")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    names = [args.only] if args.only else list(SUITE)
    table = Table(title="COCO mAP on the test split (best checkpoint by validation mAP@0.5)")
    for column in ("dataset", "config", "epochs", "training", "mAP@0.5", "mAP@[.5:.95]",
                   "AP@0.5 per class", "target", "met"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("dataset", "config") else "right")
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": machine()}
    for name in names:
        config, target = SUITE[name]
        run_dir = args.runs / (config + ("-quick" if args.quick else ""))
        status = trained(config, run_dir, args.data_dir, ["train.epochs=2"] if args.quick else [])
        run = load_trained(run_dir, "best", args.data_dir)
        evaluation = evaluate_trained(run, "test")
        metrics = evaluation["metrics"]
        per_class = {c: v["ap_50"] for c, v in evaluation["per_class_ap"].items()}
        met = None if target is None else metrics["map_50"] >= target
        verdict = "-" if met is None else "yes" if met else "no"
        table.add_row(
            name, config, str(status.get("epochs")), f"{status.get('wall_time_s', 0) / 60:.0f} min",
            f"{metrics['map_50']:.4f}", f"{metrics['map']:.4f}",
            ", ".join(f"{c} {v:.3f}" for c, v in per_class.items()),
            "-" if target is None else f">= {target}", verdict,
        )  # fmt: skip
        results[name] = {"config": config, "status": status, "metrics": metrics,
                         "per_class": evaluation["per_class_ap"], "met": met}  # fmt: skip
        if name == "kitti":
            results[name]["picture"] = str(draw_kitti(run_dir, args.data_dir))
    console.print(table)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    console.print(results["date"], results["machine"])


if __name__ == "__main__":
    main()
