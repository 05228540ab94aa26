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


class ActingLoader(ResumablePosition):
    """Training batches the model makes by acting: at the start of every phase the loader plays
    its environments with the attached model (:meth:`_collect`), then yields
    ``batches_per_phase`` batches made of what was played (:meth:`_batch`). An epoch is
    ``phases_per_epoch`` phases; ``total_phases`` (set by the task from the training length)
    drives the schedules that anneal over the whole run."""

    batches_per_phase: int

    def __init__(
        self, pool: EnvPool, observe: Observations, phases_per_epoch: int, seed: int = 0
    ) -> None:
        self.pool, self.observe = pool, observe
        self.phases_per_epoch, self.total_phases = phases_per_epoch, 1
        self.seed, self.epoch, self.position = seed, 0, 0
        self.env_steps = 0  # this process's environment steps (every environment counted)
        self.device = torch.device("cpu")
        self.policy: nn.Module | None = None
        self._model_device: torch.device | None = None
        self.collected: int | None = None  # the phase whose play is held

    def attach(self, model: nn.Module) -> None:
        """The model that acts (the one being trained)."""
        self.policy = model

    def __len__(self) -> int:
        return self.phases_per_epoch * self.batches_per_phase

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while self.position < len(self):
            k, within = divmod(self.position, self.batches_per_phase)
            phase = self.epoch * self.phases_per_epoch + k
            if self.collected != phase:
                self._collect(phase)
                self.collected = phase
            x, y = self._batch(phase, within)
            self.position += 1
            yield x.to(self.device), y.to(self.device)

    def to(self, device: torch.device) -> ActingLoader:
        self.device = device
        return self

    def tensors(self) -> list[torch.Tensor]:
        return []

    def measurements(self) -> dict[str, float]:
        """This process's environment steps so far and the mean return and length of its
        training episodes ended since the last call (if any)."""
        ended = self.pool.take_finished()
        measured = {"env_steps": float(self.env_steps)}
        if ended:
            measured["episode_return"] = float(np.mean([r for r, _ in ended]))
            measured["episode_length"] = float(np.mean([n for _, n in ended]))
        return measured

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "env_steps": self.env_steps, "pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.env_steps = int(state.get("env_steps", 0))  # not kept by checkpoints before DQN
        self.pool.load_state_dict(state["pool"])

    def _collect(self, phase: int) -> None:
        raise NotImplementedError

    def _batch(self, phase: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _generator(self, phase: int, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(batch_seed(self.seed, phase, stream, self.pool.rank))

    @torch.no_grad()
    def _outputs(self, observations: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        """The model's outputs (the attached one unless given), on the host."""
        model = model or self.policy
        assert model is not None, f"{type(self).__name__}.attach(model) before iterating"
        if self._model_device is None:  # placed by the trainer after attach; fixed from then
            self._model_device = next(model.parameters()).device
        return model(observations.to(self._model_device)).float().cpu()


class RolloutLoader(ActingLoader):
    """PPO's training batches: a phase is one rollout of ``n_steps`` in every environment,
    sampled from the attached policy, then ``ppo_epochs`` shuffled passes of minibatches."""

    def __init__(
        self,
        pool: EnvPool,
        observe: Observations,
        n_steps: int,
        batch_size: int,
        ppo_epochs: int,
        rollouts_per_epoch: int,
        gamma: float,
        gae_lambda: float,
        clip_range: float,
        clip_anneal: bool,
        seed: int = 0,
    ) -> None:
        super().__init__(pool, observe, rollouts_per_epoch, seed)
        self.n_steps, self.batch_size, self.ppo_epochs = n_steps, batch_size, ppo_epochs
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.clip_range, self.clip_anneal = clip_range, clip_anneal
        self.minibatches = math.ceil(n_steps * len(pool) / batch_size)
        self.batches_per_phase = ppo_epochs * self.minibatches
        self.x = torch.zeros(0)
        self.y = torch.zeros(0)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rollout": self.collected, "x": self.x.tolist(),
                "y": self.y.tolist()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.collected = state["rollout"]
        self.x = torch.tensor(state["x"], dtype=torch.float32)
        self.y = torch.tensor(state["y"], dtype=torch.float32)

    def _batch(self, phase: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ppo_epoch, minibatch = divmod(index, self.minibatches)
        order = torch.randperm(len(self.x), generator=self._generator(phase, 1 + ppo_epoch))
        chosen = order[minibatch * self.batch_size : (minibatch + 1) * self.batch_size]
        return self.x[chosen], self.y[chosen]

    def _evaluate(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, A), values (B,)) of the policy, on the host."""
        out = self._outputs(observations)
        return out[:, :-1], out[:, -1]

    def _collect(self, phase: int) -> None:
        """Play ``n_steps`` in every environment; keep (observations, targets) of each step."""
        steps, n = self.n_steps, len(self.pool)
        generator = self._generator(phase, 0)
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
        self.env_steps += steps * n
        _, last = self._evaluate(self.observe(self.pool.observations))
        advantages = generalised_advantages(rewards, values, dones, last, self.gamma,
                                            self.gae_lambda)  # fmt: skip
        clip = self.clip_range * (1 - phase / self.total_phases if self.clip_anneal else 1)
        targets = torch.stack(
            [actions.float(), log_probs, advantages, advantages + values,
             torch.full_like(values, clip)], dim=-1,
        )  # fmt: skip
        self.x, self.y = observations.flatten(0, 1), targets.flatten(0, 1)


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
