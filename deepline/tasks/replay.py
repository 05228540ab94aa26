"""DQN's training batches: transitions played epsilon-greedily, kept in a replay buffer.

:class:`ReplayLoader` follows Mnih et al. (2015) as Stable-Baselines3 runs it: the first
``learning_starts`` steps act at random and no update comes before them; every phase plays
``train_freq`` steps in each environment with an epsilon-greedy policy (epsilon falling
linearly from ``initial_eps`` to ``final_eps`` over the first ``exploration_fraction`` of
training) and yields ``gradient_steps`` batches sampled uniformly from the last
``buffer_size`` transitions. A batch is
``(observations, targets)`` with targets (B, 2): the action taken and its TD target
``r + gamma * max_a Q_target(s', a)`` (with ``double``, the online network picks ``a``: van
Hasselt et al. 2016). The target network copies the online one every
``target_update_interval`` environment steps. An episode cut by its time limit is not an end:
its target still adds the value of its last observation.

The buffer and the target network are tensors: they go to the checkpoint's
``loader.safetensors`` (:class:`~deepline.data.loaders.KeepsTensors`), so a resumed run samples
the same transitions and continues exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepline.data.environments import EnvPool
from deepline.data.loaders import batch_seed
from deepline.errors import CheckpointError
from deepline.tasks.rollouts import ActingLoader, Observations

TARGETS = ("action", "td_target")  # columns of a batch's targets
FIELDS = ("observation", "action", "reward", "next_observation", "terminal")


class ReplayBuffer:
    """The last ``capacity`` transitions, in a ring."""

    def __init__(self, capacity: int, features: int) -> None:
        self.capacity, self.size, self.next = capacity, 0, 0
        self.data = {
            "observation": torch.zeros(capacity, features),
            "action": torch.zeros(capacity, dtype=torch.long),
            "reward": torch.zeros(capacity),
            "next_observation": torch.zeros(capacity, features),
            "terminal": torch.zeros(capacity),
        }

    def add(self, **transitions: torch.Tensor) -> None:
        """Append a batch of transitions (each field (n, ...)), overwriting the oldest."""
        n = len(transitions["action"])
        slots: slice | torch.Tensor = slice(self.next, self.next + n)
        if self.next + n > self.capacity:  # wraps around
            slots = (self.next + torch.arange(n)) % self.capacity
        for name in FIELDS:
            self.data[name][slots] = transitions[name].to(self.data[name].dtype)
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: values[index] for name, values in self.data.items()}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"buffer.{k}": v[: self.size].clone() for k, v in self.data.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], size: int, nxt: int) -> None:
        self.size, self.next = size, nxt
        for name in FIELDS:
            self.data[name][:size] = tensors[f"buffer.{name}"]


class ReplayLoader(ActingLoader):
    """DQN's training batches from the attached Q-network (outputs (B, A + 1): the actions'
    values, then their maximum)."""

    def __init__(
        self,
        pool: EnvPool,
        observe: Observations,
        n_actions: int,
        batch_size: int,
        phases_per_epoch: int,
        train_freq: int,
        gradient_steps: int,
        buffer_size: int,
        learning_starts: int,
        target_update_interval: int,
        exploration: tuple[float, float, float],  # initial eps, final eps, fraction of training
        gamma: float,
        double: bool,
        seed: int = 0,
    ) -> None:
        super().__init__(pool, observe, phases_per_epoch, seed)
        self.n_actions, self.batch_size = n_actions, batch_size
        self.train_freq, self.batches_per_phase = train_freq, gradient_steps
        self.learning_starts, self.target_update_interval = learning_starts, target_update_interval
        self.exploration, self.gamma, self.double = exploration, gamma, double
        self.buffer = ReplayBuffer(buffer_size, pool.observations.shape[1])
        # the target network: weights run through the policy's own module, so it computes
        # exactly as the policy does (with whatever a training method changed in it)
        self.target: dict[str, torch.Tensor] | None = None
        self.synced_at = -1  # environment steps at the target network's last copy
        self._pending = {"size": 0, "next": 0}  # the buffer's place, until its tensors load

    @property
    def total_env_steps(self) -> int:
        return self.warmup_steps + self.total_phases * self.train_freq * len(self.pool)

    def epsilon(self, env_steps: int) -> float:
        """The exploration rate after ``env_steps`` of this process's steps."""
        initial, final, fraction = self.exploration
        progress = env_steps / max(1.0, fraction * self.total_env_steps)
        return initial + (final - initial) * min(1.0, progress)

    def measurements(self) -> dict[str, float]:
        return {**super().measurements(), "epsilon": self.epsilon(self.env_steps)}

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "collected": self.collected, "synced_at": self.synced_at,
                "buffer": {"size": self.buffer.size, "next": self.buffer.next}}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.collected, self.synced_at = state["collected"], int(state["synced_at"])
        self._pending = state["buffer"]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = self.buffer.state_tensors()
        if self.target is not None:
            tensors |= {f"target.{k}": v.cpu().clone() for k, v in self.target.items()}
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self._pending["size"] and "buffer.observation" not in tensors:
            raise CheckpointError(
                "this DQN checkpoint holds no replay buffer (loader.safetensors): it cannot "
                "continue exactly; train anew"
            )
        self.buffer.load_state_tensors(tensors, self._pending["size"], self._pending["next"])
        target = {k[len("target.") :]: v for k, v in tensors.items() if k.startswith("target.")}
        if target:
            self.target = target

    # -- acting and sampling ------------------------------------------------------------------

    def _target_outputs(self, observations: torch.Tensor) -> torch.Tensor:
        """The target network's outputs (on the host): the policy's module with its weights."""
        assert self.policy is not None and self.target is not None
        device = self._model_device or next(self.policy.parameters()).device
        if next(iter(self.target.values())).device != device:  # loaded from a checkpoint
            self.target = {k: v.to(device) for k, v in self.target.items()}
        with torch.no_grad():
            out = torch.func.functional_call(self.policy, self.target, (observations.to(device),))
        return out.float().cpu()

    def _sync_target(self) -> None:
        assert self.policy is not None, "ReplayLoader.attach(model) before iterating"
        self.target = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        self.synced_at = self.env_steps

    def _collect(self, phase: int) -> None:
        """Play ``train_freq`` steps in every environment and keep each transition. As in
        Stable-Baselines3, the first phase is preceded by the whole phases that fit in
        ``learning_starts`` (no updates follow them), and every step before
        ``learning_starts`` acts at random."""
        generator = np.random.default_rng(batch_seed(self.seed, phase, 0, self.pool.rank))
        steps = self.train_freq
        if phase == 0 and self.env_steps == 0:
            self._sync_target()
            steps += self.learning_starts // (self.train_freq * len(self.pool)) * self.train_freq
        for _ in range(steps):
            random = self.env_steps < self.learning_starts
            self._play(generator, explore=1.0 if random else self.epsilon(self.env_steps))

    @property
    def warmup_steps(self) -> int:
        """Environment steps played before the first update's phase (over this process)."""
        per_phase = self.train_freq * len(self.pool)
        return self.learning_starts // per_phase * per_phase

    def _play(self, generator: np.random.Generator, explore: float) -> None:
        n = len(self.pool)
        observations = self.observe(self.pool.observations)
        actions = self._outputs(observations)[:, : self.n_actions].argmax(-1).numpy()
        random = generator.random(n) < explore
        actions = np.where(random, generator.integers(self.n_actions, size=n), actions)
        step = self.pool.step(actions)
        following = self.pool.observations.copy()
        for i, last in step.final_observations.items():  # truncated: the episode's true last
            following[i] = last
        self.buffer.add(
            observation=observations, action=torch.from_numpy(actions),
            reward=torch.from_numpy(step.rewards), next_observation=self.observe(following),
            terminal=torch.from_numpy(step.terminated),
        )  # fmt: skip
        before, self.env_steps = self.env_steps, self.env_steps + n
        if self.env_steps // self.target_update_interval > before // self.target_update_interval:
            self._sync_target()

    def _batch(self, phase: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = self._generator(phase, 1 + index)
        chosen = torch.randint(self.buffer.size, (self.batch_size,), generator=generator)
        sample = self.buffer.sample(chosen)
        following = sample["next_observation"]
        q_next = self._target_outputs(following)[:, : self.n_actions]
        if self.double:
            picked = self._outputs(following)[:, : self.n_actions].argmax(-1, keepdim=True)
            best = q_next.gather(1, picked)[:, 0]
        else:
            best = q_next.max(-1).values
        td_target = sample["reward"] + self.gamma * (1.0 - sample["terminal"]) * best
        return sample["observation"], torch.stack([sample["action"].float(), td_target], -1)
