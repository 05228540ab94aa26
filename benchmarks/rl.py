"""PPO or DQN on CartPole-v1: deepline against Stable-Baselines3 with RL Zoo's tuned
hyper-parameters.

Both sides train until the greedy policy's mean return over 100 evaluation episodes reaches 475
(Gymnasium's threshold for CartPole-v1), evaluated at the same environment steps (every 10,240
after DQN's 768 steps of warm-up; on Stable-Baselines3's side just after the update that
follows that step, as deepline's epochs end), with the same hyper-parameters on one thread:

- PPO (``configs/cartpole_ppo.yaml``): 8 environments x 32 steps, 20 passes of batch 256,
  gamma 0.98, GAE lambda 0.8, lr 0.001 and clip 0.2 falling linearly to 0 over 100,000 steps,
  two 64-unit tanh networks.
- DQN (``configs/cartpole_dqn.yaml``): one environment, 1,000 random steps, 128 updates of
  batch 64 after every 256 steps, a buffer of 100,000, the target copied every 10 steps, epsilon
  1 to 0.04 over 16% of training, two 256-unit ReLU layers, Adam 2.3e-3, gradients clipped at 10.

Stable-Baselines3 runs in its own venv (``benchmarks/rl_sb3.py``, ``--sb3-python``) with its
EvalCallback over 10 evaluation environments. For each seed the two run one after the other,
alternating which goes first; wall time counts from building the environments to the stop
(``wall s``), and the whole process with Python's start-up and imports (``process s``), on both
sides.

Run: ``python benchmarks/rl.py --algo dqn --seeds 0,1,2,3,4 --out /tmp/rl.json``
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


CONFIGS = {"ppo": "cartpole_ppo", "dqn": "cartpole_dqn"}
WARMUP = {"ppo": 0, "dqn": 768}  # DQN's whole phases of random steps before the first update


def ours_once(algo: str, seed: int) -> dict:
    """One deepline run in this process: steps and seconds to the target."""
    import torch

    from deepline.config import load_config
    from deepline.training.experiment import run_training

    torch.set_num_threads(1)
    config = load_config(
        CONFIGS[algo],
        [f"seed={seed}", f"task.eval_every_steps={EVAL_EVERY}", "train.tensorboard=false"],
    )
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        exp = run_training(config, runs)
        wall = time.perf_counter() - start
    loader = exp.trainer.train_loader
    assert getattr(loader, "warmup_steps", 0) == WARMUP[algo], "the evaluation grids differ"
    best = exp.trainer.logs.get("val/mean_return", float("nan"))
    return {"seed": seed, "reached": best >= TARGET, "env_steps": loader.env_steps,  # type: ignore[attr-defined]
            "best_mean_return": best, "wall_s": wall}  # fmt: skip


def run_side(side: str, algo: str, seed: int, sb3_python: str) -> dict:
    if side == "sb3":
        command = [sb3_python, str(HERE / "rl_sb3.py"), "--algo", algo, "--seed", str(seed),
                   "--first-eval", str(WARMUP[algo] + EVAL_EVERY), "--eval-every",
                   str(EVAL_EVERY), "--target", str(TARGET)]  # fmt: skip
    else:
        command = [sys.executable, str(HERE / "rl.py"), "--algo", algo, "--ours-once", str(seed)]
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict = json.loads(out.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start  # with start-up and imports
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", choices=sorted(CONFIGS), default="ppo")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--sb3-python", default=SB3_PYTHON)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--ours-once", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_once is not None:
        print(json.dumps(ours_once(args.algo, args.ours_once)))
        return
    console = Console()
    results: dict[str, list[dict]] = {"deepline": [], "sb3": []}
    for i, seed in enumerate(int(s) for s in args.seeds.split(",")):
        order = ["deepline", "sb3"] if i % 2 == 0 else ["sb3", "deepline"]
        for side in order:
            result = run_side(side, args.algo, seed, args.sb3_python)
            results[side].append(result)
            steps, wall, best = result["env_steps"], result["wall_s"], result["best_mean_return"]
            console.print(f"seed {seed} {side}: {steps} steps, {wall:.1f} s, best {best:.1f}")
    title = f"{args.algo.upper()} on CartPole-v1 to a mean greedy return of {TARGET:g}"
    table = Table(title=f"{title} ({machine()})")
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
