"""A policy's batches: rollouts it collects itself (training) and episodes it plays (evaluation).

:class:`RolloutLoader` is the trainer's training loader for PPO: every ``batches_per_rollout``
batches it plays ``n_steps`` steps in each of its environments with the current policy, computes
advantages (GAE, Schulman et al. 2016) and then yields ``ppo_epochs`` shuffled passes of
minibatches over that rollout. A batch is ``(observations, targets)`` with targets (B, 5):
action, its log-probability when played, advantage, return, and the clip range of this rollout.

Its state is the rollout index, the position in it, the rollout itself and the environments'
(seeds and actions: :class:`~deepline.data.environments.EnvPool`); actions are sampled with a
generator seeded by (seed, rollout, process), so a resumed run plays exactly the same episodes.

:class:`EpisodeLoader` yields the observations of evaluation episodes (one per seed) and, as
targets, the :class:`~deepline.data.environments.EpisodeRun` that the evaluator steps with the
model's greedy actions: the trainer's validation and ``deepline evaluate`` drive it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepline.data.environments import EnvPool, EpisodeRun
from deepline.data.loaders import ResumablePosition, batch_seed

TARGETS = ("action", "log_prob", "advantage", "return", "clip")  # columns of a batch's targets


class Observations:
    """``(observation - mean) / std``: what the model reads (the codec's standardisation)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, observations: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((observations - self.mean) / self.std).astype(np.float32))


class RolloutLoader(ResumablePosition):
    """PPO's training batches, collected with the policy given to :meth:`attach`."""

    def __init__(
        self,
        pool: EnvPool,
        observe: Observations,
        n_steps: int,
        batch_size: int,
        ppo_epochs: int,
        rollouts_per_epoch: int,
        total_rollouts: int,
        gamma: float,
        gae_lambda: float,
        clip_range: float,
        clip_anneal: bool,
        seed: int = 0,
    ) -> None:
        self.pool, self.observe, self.n_steps = pool, observe, n_steps
        self.batch_size, self.ppo_epochs = batch_size, ppo_epochs
        self.rollouts_per_epoch, self.total_rollouts = rollouts_per_epoch, max(1, total_rollouts)
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.clip_range, self.clip_anneal = clip_range, clip_anneal
        self.seed, self.epoch, self.position = seed, 0, 0
        self.minibatches = math.ceil(n_steps * len(pool) / batch_size)
        self.device = torch.device("cpu")
        self.policy: nn.Module | None = None
        self.rollout: int | None = None  # index of the rollout in ``x``/``y``
        self.x = torch.zeros(0)
        self.y = torch.zeros(0)

    @property
    def batches_per_rollout(self) -> int:
        return self.ppo_epochs * self.minibatches

    def attach(self, model: nn.Module) -> None:
        """The policy that plays the rollouts (the model being trained)."""
        self.policy = model

    def __len__(self) -> int:
        return self.rollouts_per_epoch * self.batches_per_rollout

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while self.position < len(self):
            k, within = divmod(self.position, self.batches_per_rollout)
            rollout = self.epoch * self.rollouts_per_epoch + k
            if self.rollout != rollout:
                self._collect(rollout)
            ppo_epoch, minibatch = divmod(within, self.minibatches)
            order = torch.randperm(len(self.x), generator=self._generator(rollout, 1 + ppo_epoch))
            index = order[minibatch * self.batch_size : (minibatch + 1) * self.batch_size]
            self.position += 1
            yield self.x[index].to(self.device), self.y[index].to(self.device)

    def to(self, device: torch.device) -> RolloutLoader:
        self.device = device
        return self

    def tensors(self) -> list[torch.Tensor]:
        return []

    def measurements(self) -> dict[str, float]:
        """Mean return and length of this process's training episodes ended since the last
        call (none: nothing)."""
        ended = self.pool.take_finished()
        if not ended:
            return {}
        return {"episode_return": float(np.mean([r for r, _ in ended])),
                "episode_length": float(np.mean([n for _, n in ended]))}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "rollout": self.rollout,
            "x": self.x.tolist(),
            "y": self.y.tolist(),
            "pool": self.pool.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rollout = state["rollout"]
        self.x = torch.tensor(state["x"], dtype=torch.float32)
        self.y = torch.tensor(state["y"], dtype=torch.float32)
        self.pool.load_state_dict(state["pool"])

    # -- collecting ---------------------------------------------------------------------------

    def _generator(self, rollout: int, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(batch_seed(self.seed, rollout, stream, self.pool.rank))

    @torch.no_grad()
    def _evaluate(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, A), values (B,)) of the policy, on the host."""
        assert self.policy is not None, "RolloutLoader.attach(model) before iterating"
        device = next(self.policy.parameters()).device
        out = self.policy(observations.to(device)).float().cpu()
        return out[:, :-1], out[:, -1]

    def _collect(self, rollout: int) -> None:
        """Play ``n_steps`` in every environment; keep (observations, targets) of each step."""
        steps, n = self.n_steps, len(self.pool)
        generator = self._generator(rollout, 0)
        observations = torch.zeros(steps, n, self.pool.observations.shape[1])
        actions, log_probs = torch.zeros(steps, n, dtype=torch.long), torch.zeros(steps, n)
        values, rewards, dones = torch.zeros(steps, n), torch.zeros(steps, n), torch.zeros(steps, n)
        for t in range(steps):
            observations[t] = self.observe(self.pool.observations)
            logits, values[t] = self._evaluate(observations[t])
            actions[t] = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
            log_probs[t] = logits.log_softmax(-1).gather(1, actions[t, :, None])[:, 0]
            step = self.pool.step(actions[t].numpy())
            rewards[t] = torch.from_numpy(step.rewards)
            if step.final_observations:  # cut by the time limit: the rest is the value's guess
                cut = sorted(step.final_observations)
                _, tail = self._evaluate(self.observe(np.stack([step.final_observations[i]
                                                                for i in cut])))  # fmt: skip
                rewards[t, cut] += self.gamma * tail
            dones[t] = torch.from_numpy(step.terminated | step.truncated).float()
        _, last = self._evaluate(self.observe(self.pool.observations))
        advantages = generalised_advantages(rewards, values, dones, last, self.gamma,
                                            self.gae_lambda)  # fmt: skip
        clip = self.clip_range * (1 - rollout / self.total_rollouts if self.clip_anneal else 1)
        targets = torch.stack(
            [actions.float(), log_probs, advantages, advantages + values,
             torch.full_like(values, clip)], dim=-1,
        )  # fmt: skip
        self.x, self.y = observations.flatten(0, 1), targets.flatten(0, 1)
        self.rollout = rollout


def generalised_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """GAE(γ, λ) of (T, N) steps; ``dones[t]``: the episode ended at step t (what follows is a
    new episode, whose value is not added)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    for t in reversed(range(len(rewards))):
        following = last_values if t == len(rewards) - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages


class EpisodeLoader:
    """Evaluation episodes as batches: ``(observations of the running episodes, the run)``;
    the evaluator acts on the run with the model's outputs before the next batch."""

    def __init__(
        self,
        env_id: str,
        seeds: Sequence[int],
        batch_size: int,
        observe: Observations,
        record: int = 0,
    ) -> None:
        self.env_id, self.seeds, self.batch_size = env_id, list(seeds), batch_size
        self.observe, self.record = observe, record
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.seeds)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        run = EpisodeRun(self.env_id, self.seeds, self.batch_size, self.record)
        for observations in run:
            yield self.observe(observations).to(self.device), _Handle(run)

    def to(self, device: torch.device) -> EpisodeLoader:
        self.device = device
        return self

    def tensors(self) -> list[torch.Tensor]:
        return []


class _Handle:
    """The episode run as a batch's targets: moving it to a device leaves it as it is."""

    def __init__(self, run: EpisodeRun) -> None:
        self.run = run

    def to(self, *args: Any, **kwargs: Any) -> _Handle:
        return self
