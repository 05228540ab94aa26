"""Compression, measured as issue 17 asks: Deep Compression's 40x on MNIST's LeNet, structured
pruning's speed-up on the Fashion-MNIST ResNet, and a student a tenth the teacher's size.

1. ``lenet``: ``deepline compress MNIST_LENET_RUN --plan prune:0.95 --epochs 6`` (the same
   seed), then the compact weight file (non-zero weights as 5-bit shared values per tensor,
   positions as a bitmask, LZMA) against the original run's fp32 ``model.safetensors``; every
   file of both bundles is listed. Anchor: Han et al. 2016, LeNet-300-100 40x and LeNet-5 39x
   with no loss of accuracy (pruning, quantization and Huffman coding). Target: >= 40x for at
   most 0.1 point of test accuracy.
2. ``channels``: ``deepline compress FASHION_RESNET_RUN --plan channels:0.5 --epochs 10``:
   half of every layer's channels removed (Torch-Pruning), fine-tuned as long as the original
   trained. Target: >= 2x ONNX Runtime speed-up at batch 64 for at most 0.3 point of accuracy.
3. ``distill``: a LeNet of 14,002 weights (8 and 16 filters, 16 hidden units; the ResNet
   teacher has 174,970) trained 10 epochs on Fashion-MNIST with and without the teacher's soft
   targets (T = 4, alpha = 0.9, Hinton et al.'s usual setting; and T = 2, alpha = 0.5), and with
   feature matching added (``train.distill.features: 3000``, Tung & Mori 2019's weight for
   their similarity-preserving loss), the same seed. ``--teacher RUN`` gives another teacher
   (default: the ``--resnet`` run).

4. ``qat``: quantization-aware fine-tuning where post-training int8 loses more than 0.3 point:
   the Kvasir-SEG residual U-Net (``configs/kvasir_resunet.yaml``; Dice). ``deepline compress
   RUN --plan qat --epochs 10`` (a tenth of the learning rate), against the control that
   matters: the same 10-epoch fine-tune without QAT, then post-training int8. Dice on the 120
   test images through ONNX Runtime, int8 static QDQ for both.

The trained runs it starts from are given with ``--lenet RUN`` (``configs/mnist_lenet.yaml``),
``--resnet RUN`` (``configs/fashion_resnet.yaml``) and ``--segmenter RUN``; stages are written
inside them and reused when rerun. Run: ``python benchmarks/compression.py --data-dir
../shared/data --lenet RUN --resnet RUN --segmenter RUN [--parts lenet,channels,distill,qat]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
from pathlib import Path

from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table

from deepline.compress import compress_run, read_compression
from deepline.config import load_config
from deepline.evaluate.evaluate import evaluate_run
from deepline.evaluate.loading import load_trained

console = Console(width=150)
CHANNEL_EPOCHS = 10
STUDENT = [
    "model={name: lenet, channels: [8, 16], hidden: 16, dropout: 0.0}",
    "train.optimizer=adamw",
    "train.lr=0.003",
    "train.weight_decay=0.0001",
    "train.schedule={name: onecycle}",
]


def compressed(run: Path, plan: str, epochs: int, data_dir: str) -> dict:
    """The run's compress.json for ``plan``, computing it unless it is there."""
    done = read_compression(run)
    if done is None or done["plan"] != plan or done["epochs"] != epochs:
        shutil.rmtree(run / "compressed", ignore_errors=True)  # stages of another plan
        done = compress_run(run, plan, epochs, data_dir)
    return done


def lenet(run: Path, data_dir: str) -> None:
    result = compressed(run, "prune:0.95", 6, data_dir)
    original, pruned = result["stages"]
    table = Table(title="MNIST LeNet: pruned 95% and stored compactly (same seed)")
    for column in (
        "model",
        "test accuracy",
        "weights",
        "not zero",
        "weight file",
        "bytes",
        "x smaller",
    ):
        table.add_column(column, justify="left" if column in ("model", "weight file") else "right")
    fp32 = original["weights_bytes"]
    table.add_row(
        "original, fp32",
        f"{original['score']:.4f}",
        f"{original['parameters']:,}",
        f"{original['nonzero']:,}",
        "model.safetensors",
        f"{fp32:,}",
        "1.0x",
    )
    table.add_row(
        "pruned, fp32",
        f"{pruned['score']:.4f}",
        f"{pruned['parameters']:,}",
        f"{pruned['nonzero']:,}",
        "model.safetensors",
        f"{pruned['weights_bytes']:,}",
        f"{fp32 / pruned['weights_bytes']:.1f}x",
    )
    table.add_row(
        "pruned, compact",
        f"{pruned['compact_score']:.4f}",
        "",
        "",
        "model.compact",
        f"{pruned['compact_bytes']:,}",
        f"{fp32 / pruned['compact_bytes']:.1f}x",
    )
    console.print(table)
    drop = original["score"] - pruned["compact_score"]
    ratio = fp32 / pruned["compact_bytes"]
    verdict = "met" if ratio >= 40 and drop <= 0.001 else "not met"
    console.print(f"{ratio:.1f}x smaller, accuracy {-drop * 100:+.2f} points: target {verdict}")
    for stage in (original, pruned):
        files = ", ".join(f"{name} {size:,}" for name, size in stage["files"].items())
        console.print(f"{stage['run']}/bundle: {files}")


def alternated_speedup(slow: Path, fast: Path, batch: int = 64, rounds: int = 7) -> float:
    """The median, over ``rounds`` alternating A/B rounds of 20 calls each (the order flipped
    each round), of bundle ``slow``'s ORT time over bundle ``fast``'s, at ``batch``."""
    import statistics

    from deepline.compress.measure import latency_ms
    from deepline.deploy.predictor import Predictor

    a, b = Predictor(slow, threads=1), Predictor(fast, threads=1)
    inputs = a.prepare(a.codec.sample_inputs(batch, seed=0))
    ratios = []
    for i in range(rounds):
        order = [(a, "a"), (b, "b")] if i % 2 == 0 else [(b, "b"), (a, "a")]
        times = {key: latency_ms(p, inputs, 20) for p, key in order}
        ratios.append(times["a"] / times["b"])
    return statistics.median(ratios)


def channels(run: Path, data_dir: str) -> None:
    result = compressed(run, "channels:0.5", CHANNEL_EPOCHS, data_dir)
    original, narrow = result["stages"]
    speedup = alternated_speedup(run / "bundle", run / "compressed" / "channels-0.5" / "bundle")
    drop = original["score"] - narrow["score"]
    table = Table(
        title=f"Fashion-MNIST ResNet: half the channels removed, fine-tuned {CHANNEL_EPOCHS} epochs"
    )
    for column in ("model", "test accuracy", "weights", "ORT ms (1)", "ORT ms (64)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row in (("original", original), ("channels:0.5", narrow)):
        table.add_row(
            name,
            f"{row['score']:.4f}",
            f"{row['parameters']:,}",
            f"{row['latency_ms']['1']:.3f}",
            f"{row['latency_ms']['64']:.3f}",
        )
    console.print(table)
    verdict = "met" if speedup >= 2 and drop <= 0.003 else "not met"
    console.print(f"{speedup:.2f}x at batch 64 (median of 7 alternating rounds, 1 thread each), "
                  f"accuracy {-drop * 100:+.2f} points: {verdict}")  # fmt: skip


def distill(teacher: Path, runs: Path, data_dir: str) -> None:
    table = Table(title="Fashion-MNIST: a 14,002-weight LeNet with and without the teacher")
    for column in ("student", "training", "test accuracy"):
        table.add_column(column, justify="left" if column == "student" else "right")
    scores = {}
    variants = {
        "alone": [],
        "distilled": [f"train.distill={{teacher: {teacher}}}"],
        "distilled_t2": [f"train.distill={{teacher: {teacher}, temperature: 2, alpha: 0.5}}"],
        "distilled_features": [f"train.distill={{teacher: {teacher}, features: 3000}}"],
    }
    for name, extra in variants.items():
        run_dir = runs / f"student_{name}"
        status = trained("fashion_resnet", run_dir, data_dir, [*STUDENT, *extra])
        scores[name] = evaluate_run(run_dir, data_dir=data_dir)["metrics"]["accuracy"]
        minutes = f"{status.get('wall_time_s', 0) / 60:.0f} min"
        table.add_row(name, minutes, f"{scores[name]:.4f}")
    teacher_eval = (
        json.loads((teacher / "eval.json").read_text())
        if (teacher / "eval.json").is_file()
        else evaluate_run(teacher, data_dir=data_dir)
    )
    weights = sum(p.numel() for p in load_trained(teacher, data_dir=data_dir).model.parameters())
    accuracy = teacher_eval["metrics"]["accuracy"]
    table.add_row(f"teacher ({weights:,} weights)", "-", f"{accuracy:.4f}")
    console.print(table)
    for name in ("distilled", "distilled_t2", "distilled_features"):
        gain = (scores[name] - scores["alone"]) * 100
        console.print(f"{name}: the teacher's soft targets give {gain:+.2f} points")


def qat(run: Path, data_dir: str) -> None:
    from deepline.compress.measure import measure

    result = compressed(run, "qat", 10, data_dir)
    original, quantization_aware = result["stages"]
    control_dir = run / "finetune-control"
    lr = load_config(run / "config.yaml").train.lr / 10
    trained(str(run / "config.yaml"), control_dir, data_dir, [
        f"model.init_from={run}", "train.epochs=10", "train.max_steps=null", f"train.lr={lr}",
        "eval.checkpoint=last", "train.early_stopping=null"])  # fmt: skip
    control = measure(control_dir, data_dir)
    metric = original["metric"]
    table = Table(title=f"Kvasir-SEG residual U-Net: post-training int8 vs QAT ({metric})")
    for column in ("model", "fp32", "int8", "int8 - fp32", "ORT fp32 ms (64)", "int8 ms (64)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row in (("original, post-training int8", original),
                      ("fine-tuned 10 epochs, post-training int8", control),
                      ("fine-tuned 10 epochs with QAT, int8", quantization_aware)):  # fmt: skip
        table.add_row(
            name, f"{row['score']:.4f}", f"{row['int8_score']:.4f}",
            f"{(row['int8_score'] - row['score']) * 100:+.2f}",
            f"{row['latency_ms']['64']:.1f}", f"{row['int8_latency_ms']['64']:.1f}",
        )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--lenet", type=Path, help="a trained mnist_lenet run")
    parser.add_argument("--resnet", type=Path, help="a trained fashion_resnet run")
    parser.add_argument("--teacher", type=Path, help="the distillation teacher (default --resnet)")
    parser.add_argument("--segmenter", type=Path, help="a trained kvasir_resunet run")
    parser.add_argument("--runs", type=Path, default=Path("runs/compression"))
    parser.add_argument("--parts", default="lenet,channels,distill,qat")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if "lenet" in parts:
        lenet(args.lenet.resolve(), args.data_dir)
    if "channels" in parts:
        channels(args.resnet.resolve(), args.data_dir)
    if "distill" in parts:
        distill((args.teacher or args.resnet).resolve(), args.runs, args.data_dir)
    if "qat" in parts:
        qat(args.segmenter.resolve(), args.data_dir)
    console.print(f"{datetime.date.today()} {machine()}")


if __name__ == "__main__":
    main()
