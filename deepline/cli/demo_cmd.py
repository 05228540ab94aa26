"""``deepline demo``: the whole lifecycle on the bundled digits, in about a minute."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from deepline.cli import app, console


@app.command()
def demo(
    runs_dir: Path = typer.Option(Path("runs"), help="where the run folder is made"),
    epochs: int = typer.Option(None, min=1, help="override the config's epochs"),
) -> None:
    """Train a CNN on scikit-learn's 8x8 digits, evaluate, export, and write the report."""
    from deepline.api import train

    start = time.perf_counter()
    console.rule("[bold]deepline demo: digits -> lenet -> evaluate -> export -> report")
    overrides = {"train.epochs": epochs} if epochs else {}
    run = train("digits_lenet", overrides=overrides, runs_dir=runs_dir)
    console.rule("evaluate")
    result = run.evaluate()
    console.rule("export")
    exported = run.export()
    report = run.report()
    onnx = exported["formats"]["onnx"]
    table = Table(title="deepline demo")
    table.add_column("")
    table.add_column("value", justify="right")
    m = result["metrics"]
    table.add_row(f"test accuracy ({result['n']} images)", f"{m['accuracy']:.2%}")
    table.add_row("test macro F1", f"{m['f1_macro']:.4f}")
    table.add_row("ONNX vs PyTorch max |diff|", f"{onnx['max_abs_diff']:.1e}")
    table.add_row("wall time", f"{time.perf_counter() - start:.0f} s")
    console.print(table)
    console.print(
        f"open:   {report}\n"
        f"bundle: {exported['bundle']}\n"
        f"logs:   tensorboard --logdir {run.path / 'tb'}\n"
        f"try:    deepline predict {exported['bundle']} some_digit.png\n"
        f"serve:  deepline serve {exported['bundle']}   (then open http://127.0.0.1:8000/)"
    )
