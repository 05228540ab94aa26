"""Stable-Baselines3's PPO or DQN on CartPole-v1 with RL Zoo's tuned hyper-parameters, until the
greedy policy's mean return over 100 evaluation episodes reaches 475, evaluated at the given
environment steps (the first, then every ``--eval-every``). Runs in Stable-Baselines3's own
venv; prints one JSON line.

Run: ``SB3_PYTHON benchmarks/rl_sb3.py --algo dqn --seed 0`` (called by ``benchmarks/rl.py``).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import time

import rl_zoo3
import torch
import yaml
from rl_zoo3.utils import linear_schedule
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env

ALGORITHMS = {"ppo": PPO, "dqn": DQN}


def zoo_hyperparameters(algo: str, env_id: str) -> dict:
    """RL Zoo's ``hyperparams/<algo>.yml`` entry, its ``lin_`` schedules and ``policy_kwargs``
    made as the zoo makes them."""
    path = os.path.join(os.path.dirname(rl_zoo3.__file__), "hyperparams", f"{algo}.yml")
    with open(path) as fh:
        params = dict(yaml.safe_load(fh)[env_id])
    for key in ("learning_rate", "clip_range"):
        value = params.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            params[key] = linear_schedule(float(value[4:]))
    kwargs = params.get("policy_kwargs")
    if isinstance(kwargs, str):  # "dict(net_arch=[256, 256])": keyword literals only
        call = ast.parse(kwargs, mode="eval").body
        assert isinstance(call, ast.Call) and call.func.id == "dict", kwargs  # type: ignore[attr-defined]
        params["policy_kwargs"] = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    return params


class GridEvaluation(EvalCallback):
    """Evaluates once training has used the steps ``first``, ``first + every``, ...: on the
    call after that step (when the update that follows it has run), as deepline's epochs end
    after their updates."""

    def __init__(self, *args, first: int, every: int, n_envs: int, **kwargs) -> None:
        super().__init__(*args, eval_freq=1, **kwargs)
        self.first, self.every, self.n_envs = first, every, n_envs
        self.evaluated_at: list[int] = []
        self.means: list[float] = []

    def _on_step(self) -> bool:
        played = self.num_timesteps - self.n_envs  # the steps before this call's step
        if played < self.first or (played - self.first) % self.every:
            return True
        self.evaluated_at.append(played)
        go_on = super()._on_step()
        self.means.append(float(self.last_mean_reward))
        return go_on


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="ppo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--first-eval", type=int, default=10_240)
    parser.add_argument("--eval-every", type=int, default=10_240)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--target", type=float, default=475.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    params = zoo_hyperparameters(args.algo, args.env)
    n_envs, total = params.pop("n_envs", 1), int(params.pop("n_timesteps"))
    policy = params.pop("policy")
    env = make_vec_env(args.env, n_envs=n_envs, seed=args.seed)
    eval_env = make_vec_env(args.env, n_envs=10, seed=args.seed + 10_000)
    model = ALGORITHMS[args.algo](policy, env, seed=args.seed, device="cpu", verbose=0, **params)
    stop = StopTrainingOnRewardThreshold(reward_threshold=args.target, verbose=0)
    evaluations = GridEvaluation(
        eval_env, callback_on_new_best=stop, n_eval_episodes=args.episodes,
        deterministic=True, verbose=0, first=args.first_eval, every=args.eval_every,
        n_envs=n_envs,
    )  # fmt: skip
    model.learn(total_timesteps=total, callback=evaluations)  # schedules span the zoo's total
    wall = time.perf_counter() - start
    reached = evaluations.best_mean_reward >= args.target
    print(json.dumps({
        "seed": args.seed, "reached": bool(reached), "env_steps": evaluations.evaluated_at[-1],
        "best_mean_return": float(evaluations.best_mean_reward), "wall_s": wall,
        "evaluations": evaluations.means,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
