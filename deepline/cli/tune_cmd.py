"""``deepline tune``: hyper-parameter search with Optuna, each trial a normal run."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from deepline.cli import app, console
from deepline.config import load_config, resolve_config_path

if TYPE_CHECKING:
    import optuna


@app.command()
def tune(
    config: str = typer.Argument(..., help="the base config (YAML file or shipped name)"),
    space: Path = typer.Option(..., help="search space YAML (see configs/spaces/lenet.yaml)"),
    trials: int = typer.Option(20, min=1, help="finished trials (complete or pruned) in all"),
    storage: str = typer.Option(
        None, help="SQLAlchemy URL shared by workers; default sqlite in the output folder"
    ),
    study_name: str = typer.Option(None, help="join this study (default: from the config)"),
    workers: int = typer.Option(1, min=1, help="worker processes on this machine"),
    timeout: float = typer.Option(None, min=1, help="stop starting trials after S seconds"),
    sampler: str = typer.Option("tpe", help="tpe, random or grid"),
    pruner: str = typer.Option("median", help="median, hyperband or none"),
    out: Path = typer.Option(None, help="output folder (default `runs/tune/<name>/<time>`)"),
    set_: list[str] = typer.Option([], "--set", help="override the base config"),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
) -> None:
    """Search hyper-parameters with Optuna (pruning on the validation metric each epoch).

    Every trial is an ordinary run folder. At the end: a table of the best trials,
    tune_report.html with plots, and best_config.yaml to train with.
    """
    from deepline.tune.report import write_outputs
    from deepline.tune.space import load_space
    from deepline.tune.study import TuneSettings, run_study

    overrides = list(set_) + ([f"data.data_dir={data_dir}"] if data_dir else [])
    base = load_config(config, overrides)
    search = load_space(resolve_config_path(space), base)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = out or Path("runs") / "tune" / base.name / stamp
    out.mkdir(parents=True, exist_ok=True)
    settings = TuneSettings(
        trials=trials,
        storage=storage or f"sqlite:///{(out / 'study.db').resolve()}",
        study_name=study_name or f"{base.name}-{Path(space).stem}",
        sampler=sampler,
        pruner=pruner,
        workers=workers,
        timeout=timeout,
        seed=base.seed,
    )
    console.print(
        f"study [bold]{settings.study_name}[/] in {settings.storage}: "
        f"{trials} trials, {workers} worker(s), {sampler} sampler, {pruner} pruner"
    )
    study = run_study(settings, base, search, out / "trials")
    report = write_outputs(study, base, search, out)
    _table(study, search.metric)
    console.print(f"report: {report}\nbest config: {out / 'best_config.yaml'}")


def _table(study: optuna.Study, metric: str) -> None:
    import optuna

    from deepline.tune.report import ranked_trials

    states = [t.state for t in study.trials]
    table = Table(
        title=f"best trials by {metric} "
        f"({states.count(optuna.trial.TrialState.COMPLETE)} complete, "
        f"{states.count(optuna.trial.TrialState.PRUNED)} pruned)"
    )
    for column in ("trial", metric, "parameters"):
        table.add_column(column)
    for t in ranked_trials(study)[:5]:
        params = ", ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        table.add_row(str(t.number), f"{t.value:.5f}", params)
    console.print(table)


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
