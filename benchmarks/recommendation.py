"""MovieLens-100K next-item recommendation: every model on the same leave-one-out split.

Each model is a shipped config trained through ``deepline train`` (``ml100k_sasrec``,
``ml100k_gru4rec``, ``ml100k_bpr_mf``, and the closed-form ``ml100k_item_knn`` and
``ml100k_popularity``); the neural ones keep their best checkpoint by full-ranking NDCG@10 on
the validation items. All are evaluated on the test items (each user's last movie) under both
protocols of ``deepline.tasks.ranking``: full ranking over every unseen movie, and 100
sampled negatives (the SASRec paper's; the same negatives for every model).

Expected order on full-ranking NDCG@10: SASRec > GRU4Rec > BPR-MF > popularity.

Run: ``python benchmarks/recommendation.py --data-dir ../shared/data`` (``--seeds 0,1,2``).
``--quick`` trains each model for 2 epochs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
from pathlib import Path
from typing import Any

import torch
from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table

from deepline.evaluate.evaluate import evaluate_trained
from deepline.evaluate.loading import TrainedRun, load_trained, predict_batches
from deepline.tasks.ranking import full_ranks, rank_metrics

console = Console(width=160)  # the whole table, also in a log file
MODELS = {
    "sasrec": "ml100k_sasrec",
    "gru4rec": "ml100k_gru4rec",
    "bpr_mf": "ml100k_bpr_mf",
    "item_knn": "ml100k_item_knn",
    "popularity": "ml100k_popularity",
}
SHOWN = ("full/hr@10", "full/ndcg@10", "full/mrr", "sampled/hr@10", "sampled/ndcg@10",
         "sampled/mrr", "coverage@10")  # fmt: skip


def as_recbole_ranks(run: TrainedRun) -> dict[str, float]:
    """Test HR@10, NDCG@10 and MRR@10 with the user's history *not* excluded from the
    ranking, as RecBole's sequential models are evaluated (``benchmarks/recbole_sasrec.py``);
    MRR@10 counts ranks up to 10 only, as RecBole's does."""
    test = run.data.test
    scores = predict_batches(run.model, test.x)
    ranks = full_ranks(scores, test.x[:, :1], test.y)  # rows without their items: no exclusion
    metrics = {k: float(v.mean()) for k, v in rank_metrics(ranks).items()}
    return {"hr@10": metrics["hr@10"], "ndcg@10": metrics["ndcg@10"],
            "mrr@10": float(torch.where(ranks < 10, 1.0 / (ranks + 1.0), 0.0).mean())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/recommendation"))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--set", action="append", default=[], help="config overrides, for every model"
    )
    parser.add_argument("--quick", action="store_true", help="2 epochs per model")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": machine(),
                               "seeds": seeds}  # fmt: skip
    table = Table(title=f"MovieLens-100K, leave-one-out test ({len(seeds)} seed(s), mean)")
    for column in ("model", *SHOWN, "train time", "epochs"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in args.models.split(","):
        per_seed: list[dict[str, float]] = []
        unmasked: list[dict[str, float]] = []
        times, epochs = [], []
        for seed in seeds:
            run_dir = args.runs / f"{name}_seed{seed}"
            overrides = [*args.set, f"seed={seed}", *(["train.epochs=2"] if args.quick else [])]
            status = trained(MODELS[name], run_dir, args.data_dir, overrides)
            times.append(float(status["wall_time_s"]))
            epochs.append(int(status.get("epochs", 0)))
            run = load_trained(run_dir, None, args.data_dir)
            per_seed.append(evaluate_trained(run, "test", 0)["metrics"])
            unmasked.append(as_recbole_ranks(run))
        mean = {k: statistics.mean(m[k] for m in per_seed) for k in per_seed[0]}
        results[name] = {"metrics": per_seed, "mean": mean, "seconds": times, "epochs": epochs,
                         "history_not_excluded": unmasked}  # fmt: skip
        cells = [f"{mean[k]:.4f}" for k in SHOWN]
        table.add_row(name, *cells, f"{statistics.mean(times):.0f} s", f"{max(epochs)}")
    console.print(table)
    for name in args.models.split(","):
        kept = results[name]["history_not_excluded"]
        shown = {k: statistics.mean(m[k] for m in kept) for k in kept[0]}
        line = ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
        console.print(f"{name}, history not excluded (as RecBole ranks): {line}", highlight=False)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
