"""``deepline runs``: list run folders, or compare some side by side."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepline.cli import app, console
from deepline.errors import DeeplineError


@app.command()
def runs(
    args: list[str] = typer.Argument(
        None, help="[DIR] to list the runs below DIR (default ./runs), or: compare RUN RUN..."
    ),
    metric: str = typer.Option("val/loss", help="curve to plot when comparing"),
    out: Path = typer.Option(Path("compare.png"), help="where compare writes its plot"),
) -> None:
    """List runs as a table, or `deepline runs compare RUN RUN...`: config differences,
    metrics side by side and a plot of their learning curves."""
    from deepline.report.compare import find_runs, summarize

    args = list(args or [])
    if args[:1] == ["compare"]:
        _compare(args[1:], metric, out)
        return
    root = Path(args[0]) if args else Path("runs")
    if not root.is_dir():
        raise DeeplineError(f"'{root}' is not a folder of runs")
    table = Table(title=f"runs in {root}")
    for column in ("run", "started (UTC)", "task", "model", "best metric", "status"):
        table.add_column(column, overflow="fold")
    for path in find_runs(root):
        s = summarize(path)
        value = f"{s.metric} {s.value:.4f}" if isinstance(s.value, float) else "-"
        colour = {"completed": "green", "failed": "red", "running": "yellow"}.get(s.status, "")
        table.add_row(
            str(path.relative_to(root)) if path != root else str(path),
            s.started,
            s.task,
            s.model,
            value,
            f"[{colour}]{s.status}[/]" if colour else s.status,
        )
    console.print(table)


def _compare(paths: list[str], metric: str, out: Path) -> None:
    from deepline.report.compare import config_differences, final_metrics, plot_curves, summarize
    from deepline.runs import check_run_dir

    if len(paths) < 2:
        raise DeeplineError("compare needs at least two run folders")
    summaries = [summarize(check_run_dir(p)) for p in paths]
    names = [f"{s.name}\n{s.path.name}" for s in summaries]
    diff = Table(title="config differences")
    diff.add_column("key")
    for name in names:
        diff.add_column(name)
    for key, values in config_differences(summaries).items():
        diff.add_row(key, *[str(v) for v in values])
    console.print(diff if diff.row_count else "configs are identical")
    scores = [final_metrics(s) for s in summaries]
    table = Table(title="metrics")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for key in sorted(set().union(*scores)):
        table.add_row(key, *[f"{m[key]:.4f}" if key in m else "-" for m in scores])
    console.print(table)
    console.print(f"learning curves ({metric}): {plot_curves(summaries, out, metric)}")
