"""Training speed of SASRec on MovieLens-100K: deepline against RecBole, epoch for epoch.

In both an epoch makes every training interaction a target once (RecBole: one example per
prefix, 97,171 of them; deepline: the last 10 positions of 10,132 windows of 50, the shipped
``data.window_stride``) and ends with the full-ranking validation early stopping needs. Each
repetition runs deepline's ``ml100k_sasrec`` for ``--ours-epochs`` epochs (``deepline
train``) and RecBole's SASRec with its defaults for ``--recbole-epochs``
(``benchmarks/recbole_sasrec.py`` in RecBole's own venv), alternating which goes first, one
thread each; the table gives seconds per epoch of the training call (data loading excluded on
both sides) and the median ratio.

Run: ``python benchmarks/recbole_speed.py --data-dir ../shared/data`` (``--repeats 3``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from resumable_runs import machine, run_status
from rich.console import Console
from rich.table import Table

RECBOLE_PYTHON = Path("/work/bench_runs/recbole_venv/bin/python")
HERE = Path(__file__).resolve().parent


def ours(data_dir: str, epochs: int, work: Path) -> float:
    """Seconds per epoch of deepline's SASRec (training with its per-epoch validation)."""
    run_dir = work / "deepline_sasrec"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "deepline", "train", "ml100k_sasrec", "--run-dir",
               str(run_dir), "--data-dir", data_dir, "--set", f"train.epochs={epochs}",
               "--set", "train.early_stopping=null", "--set", "train.num_threads=1"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    status = run_status(run_dir)
    return float(status["wall_time_s"]) / int(status["epochs"])


def recbole(data_dir: str, epochs: int, work: Path, python: Path) -> float:
    """Seconds per epoch of RecBole's ``trainer.fit`` (training and per-epoch validation)."""
    out = work / "recbole_speed.json"
    command = [str(python), str(HERE / "recbole_sasrec.py"), "--data-dir", data_dir,
               "--epochs", str(epochs), "--threads", "1", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return float(json.loads(out.read_text())["seconds_per_epoch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("/work/bench_runs/recbole_speed"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ours-epochs", type=int, default=5)
    parser.add_argument("--recbole-epochs", type=int, default=1)
    parser.add_argument("--recbole-python", type=Path, default=RECBOLE_PYTHON)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for repeat in range(args.repeats):
        order = ["ours", "recbole"] if repeat % 2 == 0 else ["recbole", "ours"]
        times: dict[str, float] = {}
        for side in order:
            if side == "ours":
                times[side] = ours(args.data_dir, args.ours_epochs, args.work)
            else:
                times[side] = recbole(args.data_dir, args.recbole_epochs, args.work,
                                      args.recbole_python)  # fmt: skip
        rows.append({"order": order, **times, "ratio": times["recbole"] / times["ours"]})
        print(json.dumps(rows[-1]), flush=True)
    table = Table(title=f"SASRec on MovieLens-100K, seconds per epoch ({machine()})")
    for column in ("repeat", "first", "deepline", "RecBole", "RecBole / deepline"):
        table.add_column(column, justify="right")
    for i, row in enumerate(rows, 1):
        table.add_row(str(i), row["order"][0], f"{row['ours']:.1f}", f"{row['recbole']:.1f}",
                      f"{row['ratio']:.1f}x")  # fmt: skip
    median = statistics.median(r["ratio"] for r in rows)
    Console(width=120).print(table)
    print(f"median ratio: RecBole takes {median:.1f}x deepline's time per epoch")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "median_ratio": median}, indent=2))


if __name__ == "__main__":
    main()
