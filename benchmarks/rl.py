"""PPO on CartPole-v1: deepline against Stable-Baselines3 with RL Zoo's tuned hyper-parameters.

Both sides train until the greedy policy's mean return over 100 evaluation episodes reaches 475
(Gymnasium's threshold for CartPole-v1), evaluating every 10,240 environment steps, with the
same hyper-parameters (8 environments x 32 steps, 20 passes of batch 256, gamma 0.98, GAE
lambda 0.8, lr 0.001 and clip 0.2 falling linearly to 0 over 100,000 steps, two 64-unit tanh
networks) on one thread. Stable-Baselines3 runs in its own venv (``benchmarks/rl_sb3.py``,
``--sb3-python``) with its EvalCallback over 10 evaluation environments; deepline runs
``configs/cartpole_ppo.yaml``. For each seed the two run one after the other, alternating which
goes first; wall time counts from building the environments to the stop (``wall s``), and
the whole process with Python's start-up and imports (``process s``), on both sides.

Run: ``python benchmarks/rl.py --seeds 0,1,2,3,4 --out /tmp/rl.json``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resumable_runs import machine
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
SB3_PYTHON = "/work/bench_envs/sb3/bin/python"
EVAL_EVERY = 10_240  # 40 rollouts of 8 x 32 steps
TARGET = 475.0


def ours_once(seed: int) -> dict:
    """One deepline run in this process: steps and seconds to the target."""
    import torch

    from deepline.config import load_config
    from deepline.training.experiment import run_training

    torch.set_num_threads(1)
    config = load_config(
        "cartpole_ppo",
        [f"seed={seed}", f"task.eval_every_steps={EVAL_EVERY}", "train.tensorboard=false"],
    )
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        exp = run_training(config, runs)
        wall = time.perf_counter() - start
    per_epoch = config.task.n_envs * config.task.n_steps * round(EVAL_EVERY / 256)  # type: ignore[attr-defined]
    best = exp.trainer.logs.get("val/mean_return", float("nan"))
    return {"seed": seed, "reached": best >= TARGET, "env_steps": exp.trainer.epoch * per_epoch,
            "best_mean_return": best, "wall_s": wall}  # fmt: skip


def run_side(side: str, seed: int, sb3_python: str) -> dict:
    if side == "sb3":
        command = [sb3_python, str(HERE / "rl_sb3.py"), "--seed", str(seed),
                   "--eval-every", str(EVAL_EVERY), "--target", str(TARGET)]  # fmt: skip
    else:
        command = [sys.executable, str(HERE / "rl.py"), "--ours-once", str(seed)]
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict = json.loads(out.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start  # with start-up and imports
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--sb3-python", default=SB3_PYTHON)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--ours-once", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_once is not None:
        print(json.dumps(ours_once(args.ours_once)))
        return
    console = Console()
    results: dict[str, list[dict]] = {"deepline": [], "sb3": []}
    for i, seed in enumerate(int(s) for s in args.seeds.split(",")):
        order = ["deepline", "sb3"] if i % 2 == 0 else ["sb3", "deepline"]
        for side in order:
            result = run_side(side, seed, args.sb3_python)
            results[side].append(result)
            steps, wall, best = result["env_steps"], result["wall_s"], result["best_mean_return"]
            console.print(f"seed {seed} {side}: {steps} steps, {wall:.1f} s, best {best:.1f}")
    table = Table(title=f"PPO on CartPole-v1 to a mean greedy return of {TARGET:g} ({machine()})")
    columns = ("", "seeds reaching", "median env steps", "median wall s", "median process s",
               "steps", "wall s")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right" if column else "left")
    for side, rows in results.items():
        table.add_row(
            side, f"{sum(r['reached'] for r in rows)}/{len(rows)}",
            f"{statistics.median(r['env_steps'] for r in rows):,.0f}",
            f"{statistics.median(r['wall_s'] for r in rows):.1f}",
            f"{statistics.median(r['process_s'] for r in rows):.1f}",
            " ".join(f"{r['env_steps']}" for r in rows),
            " ".join(f"{r['wall_s']:.1f}" for r in rows),
        )  # fmt: skip
    console.print(table)
    ratios = [o["wall_s"] / s["wall_s"] for o, s in zip(results["deepline"], results["sb3"])]
    console.print(f"wall time deepline / SB3: median {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
    whole = [o["process_s"] / s["process_s"] for o, s in zip(results["deepline"], results["sb3"])]
    console.print(f"process time deepline / SB3: median {statistics.median(whole):.2f} "
                  f"({min(whole):.2f}-{max(whole):.2f})")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
