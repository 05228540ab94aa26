"""Anchor benchmark: RecBole's own SASRec on MovieLens-100K, leave-one-out, full ranking.

What it measures: the reference numbers that our SASRec is compared against, produced by the
maintained RecBole library (RUCAIBox/RecBole) with its default SASRec settings, so that any gap
is ours and not an artefact of a weak baseline.

- Data: all 100,000 ratings of MovieLens-100K (``u.data``) as implicit interactions, no rating
  or count filtering. They are written, in ``u.data``'s order, as RecBole's atomic file
  ``ml-100k.inter`` (``user_id:token item_id:token rating:float timestamp:float``) into
  ``--recbole-data``/ml-100k; the raw files are research-only and never copied into the repo.
- Protocol: each user's interactions sorted by time (stable, so ties keep file order); the last
  one is the test target, the one before it the validation target, the rest is training
  (``eval_args: {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}``).
  Every item is ranked (full ranking, the user's history is *not* masked: RecBole's default
  ``repeatable: True`` for sequential models).
- Model and training: RecBole's defaults from ``recbole/properties/model/SASRec.yaml`` and
  ``overall.yaml`` (2 layers, 2 heads, hidden 64, inner 256, dropout 0.5/0.5, CE loss over all
  items, max sequence length 50, Adam lr 1e-3, batch 2048, up to 300 epochs, early stopping
  after 10 validations without a better MRR@10), on the CPU, seed 0, ``reproducibility: True``.
- Reported: test Hit/NDCG/MRR @5/10/20 of the best-validation checkpoint, the best validation
  result, epochs run, the wall time of ``trainer.fit`` (training plus the per-epoch validation
  that early stopping needs; the pure training and validation parts separately too), total
  wall time, versions, and the dataset as RecBole counts it.

RecBole must live in its own virtual environment, not in the project's (it needs numpy<2,
pandas<2.3, setuptools<81; ``torch==2.13.0`` is the CPU build on this machine)::

    python3 -m venv /work/bench_runs/recbole_venv
    /work/bench_runs/recbole_venv/bin/pip install torch==2.13.0
    /work/bench_runs/recbole_venv/bin/pip install recbole==1.2.1 "numpy<2" "pandas<2.3" \\
        "setuptools<81" torch==2.13.0

Then, from the repository root::

    /work/bench_runs/recbole_venv/bin/python benchmarks/recbole_sasrec.py \\
        --data-dir ../shared/data --out results.json

``--epochs 2`` gives a smoke run. An epoch takes minutes on 2 shared cores (measured: about
310 s with torch's 2 threads, about 170 s with ``--threads 1``, while other training jobs held
one core), so a run to early stopping takes hours; ``--time-budget SECONDS`` stops after the
first validation past that much ``fit`` time and still tests the best checkpoint so far (the
JSON says ``stopped_by_time_budget``).

Two RecBole quirks are handled here. For a dataset named ``ml-100k`` RecBole replaces
``data_path`` by the copy bundled in its wheel, so the path is set again after the config is
built and checked after loading. RecBole's checkpoints pickle its ``Config`` object, which
``torch.load``'s ``weights_only=True`` default (torch >= 2.6) refuses; the trainer here writes
them without it (weights, optimizer state and counters only) and reads them back with
``weights_only=True``; the test set is evaluated with ``load_best_model=False``. RecBole also
reads ``--key=value`` command-line arguments as config overrides, so its config is built with
an empty argv, and it
writes ``./log`` and ``./log_tensorboard`` relative to the working directory, so the run
changes into ``--work`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import recbole
import scipy
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed

DATASET = "ml-100k"
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_WORK = Path("/work/bench_runs/recbole")
DEFAULT_RECBOLE_DATA = Path("/work/bench_runs/recbole_data")
DEFAULT_CHECKPOINTS = Path("/work/bench_runs/recbole_saved")
TOPK = (5, 10, 20)


class TimeBudgetReached(Exception):
    """Raised after a validation once ``--time-budget`` seconds of ``fit`` have passed."""


class TimedTrainer(Trainer):
    """RecBole's plain ``Trainer`` (the one it picks for SASRec) that also clocks its parts."""

    def __init__(self, config: Config, model: SASRec) -> None:
        super().__init__(config, model)
        self.train_seconds = 0.0
        self.valid_seconds = 0.0

    def _train_epoch(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return super()._train_epoch(*args, **kwargs)
        finally:
            self.train_seconds += time.perf_counter() - start

    def _valid_epoch(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return super()._valid_epoch(*args, **kwargs)
        finally:
            self.valid_seconds += time.perf_counter() - start

    def _save_checkpoint(self, epoch: int, verbose: bool = True, **kwargs: Any) -> None:
        """RecBole's checkpoint less its pickled ``Config``: the model's name, counters,
        weights and optimizer state, which ``torch.load(weights_only=True)`` reads back."""
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        save_atomic(self._state(epoch), Path(path))

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.config["model"],
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "best_file": str(self.saved_model_file),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def save_last(self, epoch: int) -> Path:
        """After every validation: the latest state, written atomically next to the best
        checkpoint (``*-last.pth``), so a killed run loses at most one epoch."""
        best = Path(self.saved_model_file)
        last = best.with_name(best.stem.removesuffix("-last") + "-last.pth")
        save_atomic(self._state(epoch), last)
        return last

    def resume_checkpoint(self, resume_file: str | Path) -> None:
        """Continue from a checkpoint this trainer wrote: its epoch, early-stopping count,
        best score, weights and optimizer state (the random state starts anew). From a
        ``*-last.pth`` file, later improvements still go to the best checkpoint it names."""
        checkpoint = load_checkpoint(resume_file)
        if checkpoint["model"] != self.config["model"]:
            raise ValueError(f"{resume_file} holds a {checkpoint['model']}, not a SASRec")
        self.saved_model_file = checkpoint.get("best_file", str(resume_file))
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a sibling file, then rename: a kill never leaves half a checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def raw_ratings_file(data_dir: Path) -> Path:
    """``u.data`` under ``data_dir`` or under its ``movielens-100k`` folder."""
    for candidate in (data_dir / "u.data", data_dir / "movielens-100k" / "u.data"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no u.data under {data_dir} or {data_dir / 'movielens-100k'}")


def write_atomic_inter(u_data: Path, recbole_data: Path) -> Path:
    """Write ``u.data`` (user, item, rating, timestamp; tab-separated) as RecBole's .inter."""
    frame = pd.read_csv(
        u_data, sep="\t", header=None, names=["user", "item", "rating", "timestamp"]
    )
    if len(frame) != 100_000:
        raise ValueError(f"{u_data} has {len(frame)} ratings, expected 100,000")
    out_dir = recbole_data / DATASET
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{DATASET}.inter"
    lines = [INTER_HEADER]
    lines += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in frame.itertuples(index=False, name=None)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config_overrides(
    recbole_data: Path, checkpoints: Path, seed: int, epochs: int | None
) -> dict[str, Any]:
    """What differs from RecBole's own defaults; everything else is left to its yaml files."""
    overrides: dict[str, Any] = {
        "data_path": str(recbole_data),
        "checkpoint_dir": str(checkpoints),
        "use_gpu": False,
        "seed": seed,
        "reproducibility": True,
        "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "train_neg_sample_args": None,
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": list(TOPK),
    }
    if epochs is not None:
        overrides["epochs"] = epochs
    return overrides


@contextmanager
def bare_argv() -> Iterator[None]:
    """Hide this script's arguments from RecBole, which parses ``--key=value`` from argv."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint ``TimedTrainer`` wrote: tensors and numbers only, read without unpickling
    anything else (``weights_only=True``)."""
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint


def metrics_at(result: dict[str, float], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}{name}@{k}": float(result[f"{name}@{k}"])
        for name in ("hit", "ndcg", "mrr")
        for k in TOPK
    }


@torch.no_grad()
def history_excluded(model: SASRec, test_data: Any, dataset: Any) -> dict[str, float]:
    """Test HR/NDCG@K and MRR with every item the user interacted with before the target
    excluded from the ranking (deepline's full-ranking protocol; RecBole cannot mask the
    history of sequential models itself). Ties count against the target; MRR has no cut-off."""
    model.eval()
    users = dataset.inter_feat[dataset.uid_field].numpy()
    items = dataset.inter_feat[dataset.iid_field].numpy()
    seen: dict[int, list[int]] = {}
    for user, item in zip(users.tolist(), items.tolist()):
        seen.setdefault(user, []).append(item)
    ranks = []
    for batch in test_data:
        interaction = batch[0].to(model.device)
        scores = model.full_sort_predict(interaction).view(len(interaction), -1).clone()
        targets = interaction[dataset.iid_field]
        scores[:, 0] = -float("inf")  # padding
        for row, (user, target) in enumerate(
            zip(interaction[dataset.uid_field].tolist(), targets.tolist())
        ):
            target_score = scores[row, target].clone()
            scores[row, seen[user]] = -float("inf")
            scores[row, target] = target_score
        target_scores = scores.gather(1, targets[:, None])
        ranks.append((scores >= target_scores).sum(1) - 1)
    rank = torch.cat(ranks).double()
    out = {f"hr@{k}": float((rank < k).double().mean()) for k in TOPK}
    out |= {f"ndcg@{k}": float(((rank < k) / torch.log2(rank + 2)).mean()) for k in TOPK}
    out["mrr"] = float((1.0 / (rank + 1)).mean())
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    total_start = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    u_data = raw_ratings_file(args.data_dir.resolve())
    recbole_data = args.recbole_data.resolve()
    checkpoints = args.checkpoint_dir.resolve()
    inter_path = write_atomic_inter(u_data, recbole_data)

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # RecBole writes ./log and ./log_tensorboard

    overrides = config_overrides(recbole_data, checkpoints, args.seed, args.epochs)
    with bare_argv():
        config = Config(model="SASRec", dataset=DATASET, config_dict=overrides)
    # RecBole points data_path of a dataset named ml-100k at its bundled copy: undo that.
    config["data_path"] = str(recbole_data / DATASET)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    dataset = create_dataset(config)
    if Path(dataset.dataset_path) != inter_path.parent:
        raise RuntimeError(f"RecBole read {dataset.dataset_path}, not {inter_path.parent}")
    # Counted before data_preparation, which drops each user's first interaction (no history).
    stats: dict[str, Any] = {
        "users": int(dataset.user_num) - 1,
        "items": int(dataset.item_num) - 1,
        "interactions": int(dataset.inter_num),
        "recbole_user_num_incl_pad": int(dataset.user_num),
        "recbole_item_num_incl_pad": int(dataset.item_num),
        "sparsity": float(dataset.sparsity),
    }
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = TimedTrainer(config, model)

    def after_validation(epoch_idx: int, valid_score: float) -> None:
        trainer.save_last(epoch_idx)
        if args.time_budget is not None and time.perf_counter() - fit_start > args.time_budget:
            raise TimeBudgetReached(f"after epoch {epoch_idx}")

    if args.resume is not None:  # continue from a best checkpoint this script wrote
        trainer.resume_checkpoint(args.resume)
    stopped_by_budget = False
    fit_start = time.perf_counter()
    if args.evaluate is None:
        try:
            trainer.fit(train_data, valid_data, saved=True, callback_fn=after_validation)
        except TimeBudgetReached:
            stopped_by_budget = True
    else:  # a checkpoint an earlier run of this script wrote
        trainer.saved_model_file = str(args.evaluate)
    fit_seconds = time.perf_counter() - fit_start
    best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result

    checkpoint = load_checkpoint(trainer.saved_model_file)
    model.load_state_dict(checkpoint["state_dict"])
    eval_start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=False)
    eval_seconds = time.perf_counter() - eval_start
    excluded = history_excluded(model, test_data, dataset)

    epochs_run = len(trainer.train_loss_dict)
    result: dict[str, Any] = {
        "benchmark": "recbole_sasrec",
        "dataset": DATASET,
        "protocol": "leave-one-out (LS valid_and_test, TO), full ranking over all items",
        **metrics_at(test_result, "test_"),
        "test_history_excluded": excluded,
        "valid_metric": config["valid_metric"],
        "best_valid_score": float(best_valid_score),
        "best_valid": metrics_at(best_valid_result, "") if best_valid_result else None,
        "best_epoch_index": int(checkpoint["epoch"]),  # 0-based, as RecBole logs it
        "epochs_run": epochs_run,
        "epochs_max": int(config["epochs"]),
        "early_stopped": epochs_run < int(config["epochs"]) and not stopped_by_budget,
        "stopped_by_time_budget": stopped_by_budget,
        "resumed_from": None if args.resume is None else str(args.resume),
        "time_budget_seconds": args.time_budget,
        "fit_seconds": round(fit_seconds, 2),
        "train_seconds": round(trainer.train_seconds, 2),
        "valid_seconds": round(trainer.valid_seconds, 2),
        "seconds_per_epoch": round(fit_seconds / max(epochs_run, 1), 2),
        "train_seconds_per_epoch": round(trainer.train_seconds / max(epochs_run, 1), 2),
        "test_eval_seconds": round(eval_seconds, 2),
        "total_seconds": round(time.perf_counter() - total_start, 2),
        "stats": {
            **stats,
            "train_sequences": len(train_data._dataset),
            "valid_users": len(valid_data._dataset),
            "test_users": len(test_data._dataset),
        },
        "hyperparameters": {
            key: config[key]
            for key in (
                "n_layers",
                "n_heads",
                "hidden_size",
                "inner_size",
                "hidden_dropout_prob",
                "attn_dropout_prob",
                "hidden_act",
                "layer_norm_eps",
                "initializer_range",
                "loss_type",
                "MAX_ITEM_LIST_LENGTH",
                "epochs",
                "train_batch_size",
                "eval_batch_size",
                "learner",
                "learning_rate",
                "weight_decay",
                "stopping_step",
                "eval_step",
                "valid_metric",
                "repeatable",
                "seed",
                "reproducibility",
            )
        },
        "checkpoint": trainer.saved_model_file,
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
        },
        "torch_threads": torch.get_num_threads(),
        "device": str(config["device"]),
    }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="RecBole SASRec on MovieLens-100K (anchor).")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder holding movielens-100k/u.data (or u.data itself)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="working directory for RecBole's log/ and log_tensorboard/",
    )
    parser.add_argument(
        "--recbole-data",
        type=Path,
        default=DEFAULT_RECBOLE_DATA,
        help="where the atomic file goes (as <this>/ml-100k/ml-100k.inter)",
    )
    parser.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINTS)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="maximum epochs (default: RecBole's, 300, with early stopping)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="continue training from a checkpoint an earlier run wrote, best or *-last.pth "
        "(its epoch, optimizer, best score and early-stopping count; the random state "
        "starts anew)",
    )
    parser.add_argument(
        "--evaluate",
        type=Path,
        default=None,
        help="only test this checkpoint (one an earlier run of this script wrote)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's, one per core)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="stop after the first validation past this many seconds of fit, "
        "then test the best checkpoint so far (default: no limit)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve() if args.out is not None else None
    result = run(args)
    print(
        f"RecBole {result['versions']['recbole']} SASRec {DATASET} full ranking | "
        f"HR@10 {result['test_hit@10']:.4f} NDCG@10 {result['test_ndcg@10']:.4f} "
        f"MRR@10 {result['test_mrr@10']:.4f} | epochs {result['epochs_run']} "
        f"(best index {result['best_epoch_index']}) | fit {result['fit_seconds']:.0f}s "
        f"({result['seconds_per_epoch']:.1f}s/epoch) | total {result['total_seconds']:.0f}s"
    )
    print(json.dumps(result, default=str))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
