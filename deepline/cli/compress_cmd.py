"""``deepline compress``: prune and distill a trained run, and one table of the trade-off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from deepline.cli import app, console


@app.command()
def compress(
    run_dir: Path = typer.Argument(..., help="the trained run to compress"),
    plan: str = typer.Option(
        None,
        help="steps in order, e.g. prune:0.9,distill,qat (prune:RATIO, channels:RATIO, "
        "distill, qat)",
    ),
    epochs: int = typer.Option(3, min=1, help="fine-tuning epochs of each stage"),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
    report: bool = typer.Option(False, "--report", help="show the last plan's table, run nothing"),
) -> None:
    """Compress a trained run: each step of --plan fine-tunes the stage before it (prune: the
    smallest weights zeroed and kept at zero; channels: that share of each layer's channels
    removed, a narrower model; distill: the original run as teacher; qat: quantization-aware,
    for int8) in
    RUN/compressed/<stages>/, a run like any other. The table gives every stage's test score,
    parameters (and those not zero), bundle bytes (and the weights' gzip bytes), ONNX Runtime
    latency at batch 1 and 64, and the compact weight file (non-zero weights as 5-bit shared
    values, LZMA; the `compact` export format) with its test score and how many times smaller
    it is than the original run's fp32 weights, and the int8 model's test score and latency;
    RUN/compress.json keeps it."""
    from deepline.compress import compress_run, read_compression

    if report:
        result = read_compression(run_dir)
        if result is None:
            raise typer.BadParameter(f"{run_dir} has no compress.json: run a --plan first")
    elif plan is None:
        raise typer.BadParameter("give --plan (e.g. prune:0.9,distill) or --report")
    else:
        result = compress_run(run_dir, plan, epochs, data_dir)
    console.print(trade_off_table(result))


def trade_off_table(result: dict[str, Any]) -> Table:
    stages = result["stages"]
    metric = stages[0]["metric"]
    table = Table(title=f"compression: {result['plan']} ({result['epochs']} epochs a stage)")
    for column in ("stage", f"test {metric}", "parameters", "not zero", "bundle", "weights gzip",
                   "ORT ms (1)", "ORT ms (64)", "compact", f"compact {metric}",
                   "x smaller", f"int8 {metric}", "int8 ms (64)"):  # fmt: skip
        if column == "stage":
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, justify="right")
    original = stages[0]["weights_bytes"]
    for row in stages:
        compact = row.get("compact_bytes")  # absent from tables written before the format
        table.add_row(
            row["stage"], f"{row['score']:.4f}", f"{row['parameters']:,}", f"{row['nonzero']:,}",
            _size(row["bundle_bytes"]), _size(row["weights_gzip_bytes"]),
            f"{row['latency_ms']['1']:.3f}", f"{row['latency_ms']['64']:.3f}",
            _size(compact) if compact else "-",
            f"{row['compact_score']:.4f}" if compact else "-",
            f"{original / compact:.1f}x" if compact else "-",
            f"{row['int8_score']:.4f}" if "int8_score" in row else "-",
            f"{row['int8_latency_ms']['64']:.3f}" if "int8_score" in row else "-",
        )  # fmt: skip
    return table


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"
