"""After a search: a table of the best trials, plots in ``tune_report.html``, the best config."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # optuna's matplotlib plots go through pyplot; never open a window

import optuna
import yaml
from matplotlib import pyplot as plt

from deepline.config import ExperimentConfig, load_config
from deepline.plots import figure_to_base64_png
from deepline.report.html import render_page
from deepline.tune.space import Space

State = optuna.trial.TrialState


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first."""
    done = [t for t in study.trials if t.state == State.COMPLETE and t.value is not None]
    return sorted(
        done,
        key=lambda t: t.value or 0.0,
        reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE,
    )


def best_config(study: optuna.Study, base: ExperimentConfig) -> ExperimentConfig:
    return load_config(base.model_dump(), {**study.best_trial.params, "name": f"{base.name}-best"})


def write_outputs(study: optuna.Study, base: ExperimentConfig, space: Space, out: Path) -> Path:
    """``best_config.yaml`` and ``tune_report.html`` in ``out``; the report's path."""
    (out / "best_config.yaml").write_text(best_config(study, base).to_yaml())
    counts = {s.name.lower(): sum(t.state == s for t in study.trials) for s in State}
    context = {
        "title": f"{study.study_name}: {space.metric} ({space.direction})",
        "counts": {k: v for k, v in counts.items() if v},
        "best": [_row(t) for t in ranked_trials(study)[:10]],
        "space": yaml.safe_dump(
            {k: p.model_dump(exclude_none=True) for k, p in space.params.items()}, sort_keys=False
        ),
        "best_config": (out / "best_config.yaml").read_text(),
        "plots": _plots(study),
    }
    return render_page("tune_report.html.j2", context, out / "tune_report.html")


def _row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "value": trial.value,
        "params": trial.params,
        "run_dir": trial.user_attrs.get("run_dir", ""),
        "seconds": trial.duration.total_seconds() if trial.duration else math.nan,
    }


def _plots(study: optuna.Study) -> dict[str, str]:
    """Optimisation history, parameter importances, parallel coordinates, as base64 PNGs."""
    from optuna.visualization import matplotlib as ovm

    makers: dict[str, Any] = {
        "optimisation history": ovm.plot_optimization_history,
        "parameter importances": ovm.plot_param_importances,
        "parallel coordinates": ovm.plot_parallel_coordinate,
        "intermediate values (pruning)": ovm.plot_intermediate_values,
    }
    plots = {}
    for title, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks these plots experimental
            try:
                axes = make(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # too few finished trials for this plot
        first: Any = axes.flat[0] if hasattr(axes, "flat") else axes
        figure = first.get_figure()
        figure.set_size_inches(8, 4.5)
        figure.tight_layout()
        plots[title] = figure_to_base64_png(figure)
        plt.close(figure)
    return plots
