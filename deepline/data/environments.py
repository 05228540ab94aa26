"""Gymnasium environments as a policy's data: observations in, discrete actions out.

An :class:`EnvPool` steps ``n`` environments together (as Gymnasium's ``SyncVectorEnv`` and
Stable-Baselines3's ``DummyVecEnv`` do) and resets each finished episode with its own seed, a
pure function of (run seed, process, environment, episode). Its whole state is therefore the
seeds and the actions taken since: a checkpoint stores them and a resume replays them, which
gives back every environment exactly, with nothing pickled.

>>> pool = EnvPool("CartPole-v1", n=2, seed=0)
>>> pool.observations.shape
(2, 4)
>>> step = pool.step(np.array([0, 1]))
>>> step.rewards.tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepline.data.loaders import batch_seed
from deepline.errors import DataError

# names people read, for environments whose spaces do not name their parts
KNOWN_NAMES: dict[str, tuple[list[str], list[str]]] = {
    "CartPole": (
        ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"],
        ["push_left", "push_right"],
    ),
    "Acrobot": (
        [
            "cos_theta1",
            "sin_theta1",
            "cos_theta2",
            "sin_theta2",
            "theta1_velocity",
            "theta2_velocity",
        ],
        ["torque_-1", "torque_0", "torque_+1"],
    ),
    "MountainCar": (["position", "velocity"], ["push_left", "no_push", "push_right"]),
    "LunarLander": (
        [
            "x",
            "y",
            "x_velocity",
            "y_velocity",
            "angle",
            "angular_velocity",
            "left_leg_contact",
            "right_leg_contact",
        ],
        ["nothing", "left_engine", "main_engine", "right_engine"],
    ),
}


def make_env(env_id: str, render: bool = False) -> Any:
    """``gymnasium.make(env_id)``, with an error naming the environments installed when the id
    is unknown, and one naming the spaces when they are not a vector and discrete actions."""
    import gymnasium as gym

    if render:  # frames are drawn off-screen: no window, no display needed
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        env = gym.make(env_id, render_mode="rgb_array" if render else None)
    except gym.error.Error as err:
        known = sorted(k for k in gym.envs.registry if "/" not in k)
        close = difflib.get_close_matches(env_id, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DataError(
            f"unknown environment '{env_id}' ({err}).{hint} Installed: {', '.join(known[:12])}, ..."
        ) from None
    except ImportError as err:
        raise DataError(f"environment '{env_id}' needs a package that is missing: {err}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise DataError(
            f"environment '{env_id}' has {type(env.action_space).__name__} actions: the policy "
            "task learns discrete actions (Discrete spaces), e.g. CartPole-v1, Acrobot-v1"
        )
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise DataError(
            f"environment '{env_id}' observes {space}: the policy task reads a vector of numbers"
        )
    return env


def space_names(env_id: str, observations: int, actions: int) -> tuple[list[str], list[str]]:
    """Names of the observation's numbers and of the actions (generic ones if unknown)."""
    obs, acts = KNOWN_NAMES.get(env_id.split("-")[0], ([], []))
    if len(obs) != observations:
        obs = [f"observation_{i}" for i in range(observations)]
    if len(acts) != actions:
        acts = [f"action_{i}" for i in range(actions)]
    return list(obs), list(acts)


def episode_seed(seed: int, rank: int, env_index: int, episode: int) -> int:
    """The seed of one episode: a pure function of the four integers (fits Gymnasium's)."""
    return batch_seed(seed, episode, env_index, 7919 + rank) % 2**63


@dataclass
class PoolStep:
    """What one step of the pool gives: a reward, whether each episode ended (terminated by
    the environment, or truncated by its time limit) and, for those truncated, the last
    observation (the pool has already reset them)."""

    rewards: np.ndarray  # (n,) float32
    terminated: np.ndarray  # (n,) bool
    truncated: np.ndarray  # (n,) bool
    final_observations: dict[int, np.ndarray] = field(default_factory=dict)


class EnvPool:
    """``n`` environments stepped together, each episode reset with its own seed.

    ``observations`` (n, F) holds the current observation of each; ``finished`` the (return,
    length) of every episode completed since the last :meth:`take_finished`.
    """

    def __init__(self, env_id: str, n: int, seed: int, rank: int = 0) -> None:
        self.env_id, self.seed, self.rank = env_id, seed, rank
        self.envs = [make_env(env_id) for _ in range(n)]
        self.episodes = [0] * n  # episodes started by each environment
        self.actions: list[list[int]] = [[] for _ in range(n)]  # since each episode's start
        self.returns = np.zeros(n, dtype=np.float64)
        self.finished: list[tuple[float, int]] = []
        self.observations = np.stack([self._reset(i) for i in range(n)])

    def __len__(self) -> int:
        return len(self.envs)

    def step(self, actions: np.ndarray) -> PoolStep:
        n = len(self.envs)
        rewards = np.zeros(n, dtype=np.float32)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        final: dict[int, np.ndarray] = {}
        for i, (env, action) in enumerate(zip(self.envs, actions.tolist(), strict=True)):
            obs, reward, term, trunc, _ = env.step(action)
            self.actions[i].append(int(action))
            rewards[i], terminated[i], truncated[i] = reward, term, trunc
            self.returns[i] += reward
            if term or trunc:
                if trunc and not term:
                    final[i] = np.asarray(obs, dtype=np.float32)
                self.finished.append((float(self.returns[i]), len(self.actions[i])))
                self.episodes[i] += 1
                obs = self._reset(i)
            self.observations[i] = obs
        return PoolStep(rewards, terminated, truncated, final)

    def take_finished(self) -> list[tuple[float, int]]:
        done, self.finished = self.finished, []
        return done

    def state_dict(self) -> dict[str, Any]:
        return {"episodes": list(self.episodes), "actions": [list(a) for a in self.actions],
                "finished": [list(f) for f in self.finished]}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Each environment reset with its episode's seed and the episode's actions replayed."""
        self.episodes = [int(e) for e in state["episodes"]]
        self.finished = [(float(r), int(n)) for r, n in state["finished"]]
        for i, actions in enumerate(state["actions"]):
            self.observations[i] = self._reset(i)
            for action in actions:
                obs, reward, *_ = self.envs[i].step(int(action))
                self.returns[i] += reward
                self.observations[i] = obs
            self.actions[i] = [int(a) for a in actions]

    def _reset(self, i: int) -> np.ndarray:
        seed = episode_seed(self.seed, self.rank, i, self.episodes[i])
        obs, _ = self.envs[i].reset(seed=seed)
        self.actions[i], self.returns[i] = [], 0.0
        return np.asarray(obs, dtype=np.float32)


class EpisodeRun:
    """Evaluation episodes, one per seed, run ``batch_size`` at a time and driven by whoever
    iterates: iterating yields the observations of the episodes still running; :meth:`act`
    steps them with the chosen actions and gives the (return, length) of those that ended.
    ``record``: keep up to this many frames of the first episode, for people to watch."""

    def __init__(self, env_id: str, seeds: Sequence[int], batch_size: int, record: int = 0) -> None:
        self.env_id, self.seeds, self.batch_size = env_id, list(seeds), batch_size
        self.record = record
        self.frames: list[np.ndarray] = []
        self._envs: list[Any] = []
        self._running: list[int] = []
        self._obs: dict[int, np.ndarray] = {}
        self._returns: dict[int, float] = {}
        self._lengths: dict[int, int] = {}

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.seeds), self.batch_size):
            chunk = self.seeds[start : start + self.batch_size]
            self._envs = [make_env(self.env_id, render=self.record > 0 and start + i == 0)
                          for i in range(len(chunk))]  # fmt: skip
            self._running = list(range(len(chunk)))
            self._returns = dict.fromkeys(self._running, 0.0)
            self._lengths = dict.fromkeys(self._running, 0)
            self._obs = {
                i: np.asarray(env.reset(seed=int(s))[0], dtype=np.float32)
                for i, (env, s) in enumerate(zip(self._envs, chunk))
            }
            self._keep_frame(0)
            while self._running:
                yield np.stack([self._obs[i] for i in self._running])
            for env in self._envs:
                env.close()

    def act(self, actions: np.ndarray) -> list[tuple[float, int]]:
        """Step every running episode with its action (in the order of the last observations
        yielded); the (return, length) of each episode that ended."""
        if len(actions) != len(self._running):
            raise DataError(f"{len(actions)} actions for {len(self._running)} running episodes")
        ended: list[tuple[float, int]] = []
        still: list[int] = []
        for i, action in zip(self._running, actions.tolist()):
            obs, reward, term, trunc, _ = self._envs[i].step(int(action))
            self._returns[i] += float(reward)
            self._lengths[i] += 1
            self._obs[i] = np.asarray(obs, dtype=np.float32)
            self._keep_frame(i)
            if term or trunc:
                ended.append((self._returns[i], self._lengths[i]))
            else:
                still.append(i)
        self._running = still
        return ended

    def _keep_frame(self, index: int) -> None:
        """Only the first episode's environment renders; its frames are kept at a third of
        their size (a CartPole episode of 500 steps: 40 MB)."""
        env = self._envs[index]
        if env.render_mode == "rgb_array" and len(self.frames) < self.record:
            self.frames.append(np.asarray(env.render())[::3, ::3].copy())
