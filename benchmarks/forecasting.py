"""Forecasting backtests on real series: deep models chosen on validation against statistics.

For each series (bundled with statsmodels: ``sunspots``, ``co2``, ``elnino``) every candidate
model (GRU, LSTM, Transformer encoder, N-BEATS) trains for each seed; the model with the lowest
mean validation MASE (3 origins before the test's) is the deep model of that series, and only
then are the test origins (the last 6, a horizon apart) scored: the chosen model's MAE, RMSE,
sMAPE and MASE (mean over seeds) beside seasonal naive, ETS and ARIMA refitted on the whole
history before every test origin (statsmodels). Model checkpoints are picked by validation MASE
too; nothing is chosen on the test origins.

Run: ``python benchmarks/forecasting.py --seeds 0,1,2 --out /tmp/forecasting.json``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from resumable_runs import machine
from rich.console import Console
from rich.table import Table

from deepline.config import load_config
from deepline.evaluate.evaluate import score
from deepline.evaluate.loading import load_trained
from deepline.tasks import build_task, task_class
from deepline.training.experiment import run_training

SERIES = {  # context, horizon: four cycles or seasons read, one forecast
    "sunspots": {"context": 44, "series": {"horizon": 11}},
    "co2": {"context": 48, "series": {"horizon": 12}},
    "elnino": {"context": 48, "series": {"horizon": 12}},
}
MODELS = {
    "gru": {"name": "gru", "hidden": 64, "layers": 1},
    "lstm": {"name": "lstm", "hidden": 64, "layers": 1},
    "transformer": {"name": "transformer", "d_model": 32, "heads": 4, "layers": 2,
                    "dropout": 0.1},
    "nbeats": {"name": "nbeats", "blocks": 4, "width": 256, "layers": 4},
}  # fmt: skip
METRICS = ("mae", "rmse", "smape", "mase")


def config(series: str, model: str, seed: int, epochs: int) -> dict[str, Any]:
    data = SERIES[series]
    return {
        "name": f"{series}_{model}",
        "seed": seed,
        "data": {"name": series, "context": data["context"],
                 "series": {**data["series"], "test_origins": 6, "val_origins": 3}},
        "task": {"name": "forecasting", "baselines": ["seasonal_naive", "ets", "arima"]},
        "model": MODELS[model],
        "train": {"epochs": epochs, "batch_size": 32, "optimizer": "adam", "lr": 1e-3,
                  "num_threads": 1, "tensorboard": False},
        "eval": {"batch_size": 64},
    }  # fmt: skip


def train_and_score(raw: dict[str, Any], runs: Path) -> dict[str, Any]:
    """Validation and test metrics of the run's best checkpoint (chosen by validation MASE)."""
    start = time.perf_counter()
    exp = run_training(load_config(raw), runs, console=Console(quiet=True))
    run = load_trained(exp.run_dir, data=exp.data)
    out: dict[str, Any] = {"wall_s": time.perf_counter() - start}
    for split in ("val", "test"):
        evaluator = score(run.task, run.model, run.data.split(split), 64)
        out[split] = evaluator.compute()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", default=",".join(SERIES))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    console = Console()
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for series in args.series.split(","):
            entry: dict[str, Any] = {"models": {}}
            for model in args.models.split(","):
                runs = [train_and_score(config(series, model, s, args.epochs), Path(tmp))
                        for s in seeds]  # fmt: skip
                entry["models"][model] = {
                    "val_mase": statistics.mean(r["val"]["mase"] for r in runs),
                    "test": {m: statistics.mean(r["test"][m] for r in runs) for m in METRICS},
                    "test_mase_per_seed": [r["test"]["mase"] for r in runs],
                    "wall_s": statistics.mean(r["wall_s"] for r in runs),
                }
                val = entry["models"][model]["val_mase"]
                console.print(f"{series} {model}: val MASE {val:.3f}")
            chosen = min(entry["models"], key=lambda m: entry["models"][m]["val_mase"])
            entry["chosen"] = chosen
            start = time.perf_counter()
            probe = load_config(config(series, chosen, seeds[0], 1))
            data = task_class("forecasting").load_data(probe.data)
            task = build_task(probe.task, data.meta)
            entry["baselines"] = task.baselines(data, "test")["baselines"]
            entry["baselines_wall_s"] = time.perf_counter() - start
            results[series] = entry
    show(results, console, len(seeds))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


def show(results: dict[str, Any], console: Console, seeds: int) -> None:
    table = Table(title=f"Test backtests, 6 origins per series ({machine()}; deep models: mean "
                        f"of {seeds} seeds)")  # fmt: skip
    for column in ("series", "method", "val MASE", *METRICS):
        table.add_column(column, justify="left" if column in ("series", "method") else "right")
    for series, entry in results.items():
        for model, made in entry["models"].items():
            mark = " (chosen)" if model == entry["chosen"] else ""
            table.add_row(series, model + mark, f"{made['val_mase']:.3f}",
                          *(f"{made['test'][m]:.3f}" for m in METRICS))  # fmt: skip
        for name, metrics in entry["baselines"].items():
            table.add_row(series, name, "-", *(f"{metrics[m]:.3f}" for m in METRICS))
    console.print(table)


if __name__ == "__main__":
    main()
