"""Stable-Baselines3's PPO on CartPole-v1 with RL Zoo's tuned hyper-parameters, until the greedy
policy's mean return over 100 evaluation episodes reaches 475 (evaluated every 10,240
environment steps). Runs in Stable-Baselines3's own venv; prints one JSON line.

Run: ``SB3_PYTHON benchmarks/rl_sb3.py --seed 0`` (called by ``benchmarks/rl.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import rl_zoo3
import torch
import yaml
from rl_zoo3.utils import linear_schedule
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env


def zoo_hyperparameters(env_id: str) -> dict:
    """RL Zoo's ``hyperparams/ppo.yml`` entry, with its ``lin_`` schedules made as the zoo does."""
    path = os.path.join(os.path.dirname(rl_zoo3.__file__), "hyperparams", "ppo.yml")
    with open(path) as fh:
        params = dict(yaml.safe_load(fh)[env_id])
    for key in ("learning_rate", "clip_range"):
        value = params.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            params[key] = linear_schedule(float(value[4:]))
    return params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--eval-every", type=int, default=10_240)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--target", type=float, default=475.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    params = zoo_hyperparameters(args.env)
    n_envs, total = params.pop("n_envs"), int(params.pop("n_timesteps"))
    policy = params.pop("policy")
    env = make_vec_env(args.env, n_envs=n_envs, seed=args.seed)
    eval_env = make_vec_env(args.env, n_envs=10, seed=args.seed + 10_000)
    model = PPO(policy, env, seed=args.seed, device="cpu", verbose=0, **params)
    stop = StopTrainingOnRewardThreshold(reward_threshold=args.target, verbose=0)
    evaluations = EvalCallback(
        eval_env, callback_on_new_best=stop, n_eval_episodes=args.episodes,
        eval_freq=args.eval_every // n_envs, deterministic=True, verbose=0,
    )  # fmt: skip
    model.learn(total_timesteps=total, callback=evaluations)
    wall = time.perf_counter() - start
    reached = evaluations.best_mean_reward >= args.target
    print(json.dumps({
        "seed": args.seed, "reached": bool(reached), "env_steps": int(model.num_timesteps),
        "best_mean_return": float(evaluations.best_mean_reward), "wall_s": wall,
        "evaluations": [float(r.mean()) for r in evaluations.evaluations_results],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
