"""A policy: an observation in, a discrete action out, learned by PPO or DQN.

The data is a Gymnasium environment (``data.name: CartPole-v1``). Training plays it, with
``task.algorithm``:

- ``ppo`` (Schulman et al. 2017): a clipped objective, GAE, value and entropy terms, on rollouts
  of ``n_envs`` environments (:mod:`deepline.tasks.rollouts`). The model gives (B, A + 1): the
  actions' logits and the observation's value (``actor_critic``).
- ``dqn`` (Mnih et al. 2015): epsilon-greedy play into a replay buffer, a target network and
  the Huber loss on TD targets (:mod:`deepline.tasks.replay`). The model gives (B, A + 1): the
  actions' values and their maximum (``q_network``).

Validation and evaluation play whole episodes with the greedy action (held-out seeds: 100 for
``val``, 100 others for ``test``) and report their mean return.

Splits: ``train`` holds observations of a random policy (their mean and standard deviation
standardise observations, as the codec does in serving, and they are drift's reference);
``val`` and ``test`` hold each episode's first observation and, as ``y``, its seed.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from deepline.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from deepline.data.environments import EnvPool, EpisodeRun, episode_seed, make_env, space_names
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.errors import ConfigError, DataError
from deepline.registry import TASKS
from deepline.tasks.base import Evaluator, Figure, OutputSpec, Task
from deepline.tasks.replay import ReplayLoader
from deepline.tasks.rollouts import ActingLoader, EpisodeLoader, Observations, RolloutLoader

EPISODES = 100  # evaluation episodes of each of val and test (Gymnasium's "solved" averages 100)
RANDOM_STEPS = 4096  # random-policy steps whose observations standardise the model's inputs
FRAMES = 400  # frames of the first test episode kept for the report's strip


PPO_ONLY = frozenset({"n_steps", "ppo_epochs", "gae_lambda", "clip_range", "clip_anneal",
                      "vf_coef", "ent_coef", "normalize_advantages"})  # fmt: skip
MODELS_OF = {"ppo": "actor_critic", "dqn": "q_network"}  # what each algorithm learns
DQN_ONLY = frozenset({"buffer_size", "learning_starts", "train_freq", "gradient_steps",
                      "target_update_interval", "exploration_fraction", "exploration_initial_eps",
                      "exploration_final_eps", "double_q"})  # fmt: skip


class PolicyConfig(TaskConfig):
    name: Literal["policy"] = "policy"
    algorithm: Literal["ppo", "dqn"] = Field(
        "ppo", description="ppo (an actor_critic model) or dqn (a q_network model)"
    )
    n_envs: int = Field(8, ge=1, le=1024, description="environments played at once, per process")
    gamma: float = Field(0.99, gt=0.0, le=1.0, description="discount of future rewards")
    eval_every_steps: int = Field(
        10_000, ge=1, description="environment steps (over all processes) per epoch: each "
        "epoch ends with the validation episodes",
    )  # fmt: skip
    eval_episodes: int = Field(EPISODES, ge=1, le=EPISODES, description="validation episodes")
    # PPO
    n_steps: int = Field(128, ge=1, description="ppo: steps of each environment per rollout")
    ppo_epochs: int = Field(10, ge=1, description="ppo: passes over each rollout")
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0, description="ppo: GAE's bias-variance balance")
    clip_range: float = Field(0.2, gt=0.0, lt=1.0, description="ppo: the ratio clip")
    clip_anneal: bool = Field(False, description="ppo: the clip falls linearly to 0 over training")
    vf_coef: float = Field(0.5, ge=0.0, description="ppo: weight of the value loss")
    ent_coef: float = Field(0.0, ge=0.0, description="ppo: weight of the entropy bonus")
    normalize_advantages: bool = True
    # DQN
    buffer_size: int = Field(
        100_000, ge=1, description="dqn: transitions kept for replay (over all processes, "
        "each keeping its share of its own)",
    )  # fmt: skip
    learning_starts: int = Field(
        100, ge=0, description="dqn: random environment steps (over all processes) before "
        "learning",
    )  # fmt: skip
    train_freq: int = Field(4, ge=1, description="dqn: steps of each environment per phase")
    gradient_steps: int = Field(1, ge=1, description="dqn: updates after each phase's steps")
    target_update_interval: int = Field(
        10_000, ge=1, description="dqn: environment steps (over all processes) between "
        "copies to the target network",
    )  # fmt: skip
    exploration_fraction: float = Field(
        0.1, gt=0.0, le=1.0, description="dqn: share of training over which epsilon falls"
    )
    exploration_initial_eps: float = Field(1.0, ge=0.0, le=1.0, description="dqn: first epsilon")
    exploration_final_eps: float = Field(0.05, ge=0.0, le=1.0, description="dqn: last epsilon")
    double_q: bool = Field(False, description="dqn: the online network picks the next action")

    checkpoint_monitor = ("val/mean_return", "max")

    @model_validator(mode="after")
    def _settings_of_the_algorithm(self) -> PolicyConfig:
        foreign = PPO_ONLY if self.algorithm == "dqn" else DQN_ONLY
        fields = type(self).model_fields
        stray = sorted(f for f in foreign if getattr(self, f) != fields[f].default)
        if stray:
            other = "ppo" if self.algorithm == "dqn" else "dqn"
            names = ", ".join(f"task.{f}" for f in stray)
            raise ValueError(
                f"{names}: settings of algorithm {other}, and this task's algorithm is "
                f"{self.algorithm} (set task.algorithm: {other}, or remove them)"
            )
        return self


@TASKS.register(
    "policy",
    config=PolicyConfig,
    example={"data": {"name": "CartPole-v1"}, "task": {"n_envs": 2, "n_steps": 8,
             "eval_episodes": 4}, "model": {"name": "actor_critic", "hidden": [16]}},
)  # fmt: skip
class Policy(Task):
    """Inputs (B, F) standardised observations; outputs (B, A + 1) logits and value."""

    name = "policy"
    plays = True
    config: PolicyConfig

    @property
    def actions(self) -> list[str]:
        return list(self.meta.classes)

    # -- data and training ------------------------------------------------------------------

    @classmethod
    def load_data(cls, config: DataConfig) -> DataSplits:
        """The environment ``config.name``: its spaces, random-policy observations (train)
        and the seeds of the evaluation episodes (val, test)."""
        import gymnasium

        env = make_env(config.name)
        features, n_actions = env.observation_space.shape[0], int(env.action_space.n)
        observed, actions = space_names(config.name, features, n_actions)
        pool = EnvPool(config.name, 1, seed=config.split_seed, rank=1_000_003)
        rng = np.random.default_rng(config.split_seed)
        seen = [pool.observations[0].copy()]
        for _ in range(RANDOM_STEPS - 1):
            pool.step(rng.integers(n_actions, size=1))
            seen.append(pool.observations[0].copy())
        raw = np.stack(seen).astype(np.float64)
        mean = raw.mean(0) if config.normalize else np.zeros(features)
        std = np.maximum(raw.std(0), 1e-3) if config.normalize else np.ones(features)
        observe = Observations(mean.tolist(), std.tolist())
        splits = {"train": Split(observe(raw.astype(np.float32)), torch.zeros(len(raw)))}
        for number, split in enumerate(("val", "test"), start=1):
            seeds = [episode_seed(config.split_seed, -number, 0, k) for k in range(EPISODES)]
            first = np.stack([env.reset(seed=s)[0] for s in seeds]).astype(np.float32)
            splits[split] = Split(observe(first), torch.tensor(seeds, dtype=torch.int64))
        identity = f"{config.name}:gymnasium {gymnasium.__version__}:{config.split_seed}"
        meta = DataMeta(
            name=config.name, codec="features", input_shape=(features,), classes=actions,
            input_scale=1.0, mean=mean.tolist(), std=std.tolist(),
            fingerprint=hashlib.sha256(identity.encode()).hexdigest(),
            sizes={k: len(v) for k, v in splits.items()}, files=[], feature_names=observed,
        )  # fmt: skip
        return DataSplits(splits["train"], splits["val"], splits["test"], meta)

    def loaders(
        self, cfg: ExperimentConfig, data: DataSplits, batch_size: int, rank: int, world: int
    ) -> tuple[ActingLoader, Any]:  # validation: episodes (an EpisodeLoader)
        c = self.config
        pool = EnvPool(self.meta.name, c.n_envs, cfg.seed, rank)
        per_phase = c.n_envs * (c.n_steps if c.algorithm == "ppo" else c.train_freq) * world
        phases = max(1, round(c.eval_every_steps / per_phase))
        train: ActingLoader
        if c.algorithm == "ppo":
            train = RolloutLoader(
                pool, self.observe, c.n_steps, batch_size, c.ppo_epochs, phases, c.gamma,
                c.gae_lambda, c.clip_range, c.clip_anneal, cfg.seed,
            )  # fmt: skip
        else:
            exploration = (c.exploration_initial_eps, c.exploration_final_eps,
                           c.exploration_fraction)  # fmt: skip
            # the step counts are over all processes: each process plays its share
            train = ReplayLoader(
                pool, self.observe, len(self.actions), batch_size, phases, c.train_freq,
                c.gradient_steps, max(1, c.buffer_size // world), c.learning_starts // world,
                max(1, c.target_update_interval // world), exploration, c.gamma, c.double_q,
                cfg.seed,
            )  # fmt: skip
        train.total_phases = _total_phases(cfg.train, train)
        seeds = data.val.y.tolist()[: c.eval_episodes][rank::world]
        return train, EpisodeLoader(self.meta.name, seeds, cfg.eval.batch_size, self.observe)

    @property
    def observe(self) -> Observations:
        return Observations(self.meta.mean, self.meta.std)

    def check_training(self, train: TrainConfig) -> None:
        self.refuse_methods(train, {
            "privacy": "DP-SGD protects training examples; a policy learns from an environment",
            "adversarial": "adversarial training attacks labelled examples",
            "method": "semi- and self-supervised methods learn from unlabelled images",
            "distill": "distillation matches a teacher's class scores on a dataset",
            "mixup": "a mixed observation has no action or return of its own",
        })  # fmt: skip
        if train.accumulate != 1:
            raise ConfigError(
                "train.accumulate cannot be combined with task policy: each minibatch is one "
                f"{self.config.algorithm.upper()} update (raise train.batch_size instead)"
            )

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        from deepline.models import build_model

        algorithm = self.config.algorithm
        learner = MODELS_OF[algorithm]
        if model_config.name in MODELS_OF.values() and model_config.name != learner:
            other = next(a for a, m in MODELS_OF.items() if m == model_config.name)
            raise ConfigError(
                f"model.name {model_config.name} cannot be combined with task.algorithm "
                f"{algorithm}: {algorithm} trains a {learner} model (use model.name: {learner}, "
                f"or task.algorithm: {other})"
            )
        features = self.meta.input_shape[0]
        return build_model(model_config, in_channels=features, num_classes=len(self.actions))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """PPO's clipped surrogate + ``vf_coef`` x value error - ``ent_coef`` x entropy; for
        DQN, the Huber loss of the taken action's value against its TD target."""
        if self.config.algorithm == "dqn":
            action, td_target = targets.unbind(-1)
            taken = outputs[:, :-1].float().gather(1, action.long()[:, None])[:, 0]
            return F.smooth_l1_loss(taken, td_target)
        logits, values = outputs[:, :-1].float(), outputs[:, -1].float()
        action, old_log_prob, advantage, returns, clip = targets.unbind(-1)
        log_probs = logits.log_softmax(-1)
        log_prob = log_probs.gather(1, action.long()[:, None])[:, 0]
        if self.config.normalize_advantages and len(advantage) > 1:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        ratio = (log_prob - old_log_prob).exp()
        clipped = ratio.clamp(1 - clip, 1 + clip)
        surrogate = -torch.minimum(advantage * ratio, advantage * clipped).mean()
        entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
        value_loss = F.mse_loss(values, returns)
        return surrogate + self.config.vf_coef * value_loss - self.config.ent_coef * entropy

    def monitor_default(self) -> tuple[str, str]:
        return "val/mean_return", "max"

    # -- evaluation ---------------------------------------------------------------------------

    def evaluator(self, keep_mistakes: int = 0) -> ReturnEvaluator:
        return ReturnEvaluator()

    def batches(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int
    ) -> Any:  # an episode run for each seed in ``y``
        return iter(EpisodeLoader(self.meta.name, y.tolist(), batch_size, self.observe, FRAMES))

    def example_batch(self, split: Split, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first observations of ``n`` episodes and their seeds (which play them again)."""
        return split.x[:n], split.y[:n]

    def class_scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, :-1]

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        figures: dict[str, Figure] = {}
        returns = evaluation.get("returns")
        if returns:
            figures["returns"] = Figure(
                "Returns of the evaluation episodes",
                f"{len(returns)} episodes of the greedy policy, each from its own seed.",
                lambda p: plot_returns(returns, p),
            )
        strip = evaluation.get("frames_png")
        if strip:
            figures["episode"] = Figure(
                "An episode of the greedy policy",
                "Frames of the first evaluation episode, evenly spaced from its start to its end.",
                lambda p: _write_png(strip, p),
            )
        return figures

    def play(
        self,
        engine: Callable[[np.ndarray], np.ndarray],
        env_id: str | None,
        episodes: int,
        seed: int = 0,
        record: int = 0,
    ) -> dict[str, Any]:
        env_id = env_id or self.meta.name
        env = make_env(env_id)
        features, actions = env.observation_space.shape[0], int(env.action_space.n)
        if (features, actions) != (self.meta.input_shape[0], len(self.actions)):
            raise DataError(
                f"environment '{env_id}' observes {features} numbers and has {actions} "
                f"actions; this policy ({self.meta.name}) reads {self.meta.input_shape[0]} and "
                f"has {len(self.actions)}"
            )
        run = EpisodeRun(env_id, [seed + i for i in range(episodes)], episodes, record)
        ended: list[tuple[float, int]] = []
        for observations in run:
            raw = np.asarray(engine(self.codec.decode_tensor(observations)))
            ended += run.act(raw[:, :-1].argmax(-1))
        returns = np.array([r for r, _ in ended])
        return {
            "env": env_id,
            "episodes": [{"seed": seed + i, "return": r, "length": n}
                         for i, (r, n) in enumerate(ended)],
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "frames": run.frames,
        }  # fmt: skip

    # -- serving ------------------------------------------------------------------------------

    def signature(self) -> dict[str, Any]:
        width = len(self.actions) + 1
        name = "logits_value" if self.config.algorithm == "ppo" else "q_values_max"
        return {
            "inputs": [self.codec.input_spec()],
            "outputs": [{"name": name, "dtype": "float32", "shape": [-1, width]}],
        }

    @property
    def _scores(self) -> str:
        """What the model says of each action: PPO's probabilities or DQN's values."""
        return "probabilities" if self.config.algorithm == "ppo" else "q_values"

    def outputs(self) -> list[OutputSpec]:
        k, actions = len(self.actions), tuple(self.actions)
        return [
            OutputSpec("action", "BYTES", (-1,)),
            OutputSpec(self._scores, "FP32", (-1, k), actions),
            OutputSpec("value", "FP32", (-1,)),
        ]

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The greedy action's name, every action's probability (PPO) or value (DQN) and the
        observation's value."""
        raw = np.asarray(raw, dtype=np.float32)
        scores = raw[:, :-1]
        if self.config.algorithm == "ppo":
            shifted = np.exp(scores - scores.max(-1, keepdims=True))
            scores = (shifted / shifted.sum(-1, keepdims=True)).astype(np.float32)
        names = np.asarray(self.actions, dtype=object)
        return {
            "action": names[raw[:, :-1].argmax(-1)],
            self._scores: scores.copy(),
            "value": raw[:, -1].copy(),
        }

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """Every action, the greedy one first, with its probability (for DQN's greedy policy:
        1 for the chosen action) and, for DQN, its value; and the observation's value."""
        index = {a: i for i, a in enumerate(self.actions)}
        answers = []
        for row, action, value in zip(named[self._scores], named["action"], named["value"]):
            chosen = index[action]
            order = [chosen, *(i for i in np.argsort(-row, kind="stable") if i != chosen)]
            answer = []
            for i in order[: top_k or len(order)]:
                entry = {"action": self.actions[i], "index": int(i)}
                if self.config.algorithm == "ppo":
                    entry["probability"] = float(row[i])
                else:
                    entry |= {"probability": float(i == chosen), "q_value": float(row[i])}
                answer.append({**entry, "value": float(value)})
            answers.append(answer)
        return answers

    def answer_form(self) -> dict[str, Any]:
        return {"type": "ranking", "classes": len(self.actions)}

    def answer_cells(self, answer: Any) -> list[str]:
        if self.config.algorithm == "dqn":
            return [f"{a['action']} (Q {a['q_value']:.2f})" for a in answer]
        return [f"{a['action']} ({a['probability']:.1%})" for a in answer]

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw)[:, :-1].argmax(-1)  # the greedy action

    def drift_categories(self) -> int:
        return len(self.actions)


def _total_phases(train: TrainConfig, loader: ActingLoader) -> int:
    if train.max_steps is not None:
        return max(1, math.ceil(train.max_steps / loader.batches_per_phase))
    return max(1, (train.epochs or 1) * loader.phases_per_epoch)


class ReturnEvaluator(Evaluator):
    """Plays the episodes its batches come from with the model's greedy action; the mean,
    spread and extremes of their returns and lengths (gathered over processes)."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[tuple[float, int]] = []
        self.frames: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: Any) -> None:
        run = targets.run
        self.ended += run.act(outputs[:, :-1].argmax(-1).cpu().numpy())
        self.frames = run.frames

    def _values(self) -> tuple[np.ndarray, np.ndarray]:
        ended = self.ended
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            every: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(every, ended)
            ended = [e for part in every for e in part]
        returns = np.array([r for r, _ in ended], dtype=np.float64)
        return returns, np.array([n for _, n in ended], dtype=np.float64)

    def compute(self) -> dict[str, float]:
        returns, lengths = self._values()
        if not len(returns):
            return {"mean_return": float("nan"), "episodes": 0.0}
        return {
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "min_return": float(returns.min()),
            "max_return": float(returns.max()),
            "mean_length": float(lengths.mean()),
            "episodes": float(len(returns)),
        }

    def details(self) -> dict[str, Any]:
        returns, lengths = self._values()
        out: dict[str, Any] = {"n": len(returns), "returns": returns.tolist(),
                               "lengths": lengths.tolist()}  # fmt: skip
        if self.frames:
            out["frames_png"] = frame_strip(self.frames)
        return out


def frame_strip(frames: list[np.ndarray], count: int = 8) -> str:
    """``count`` frames evenly spaced over the episode, side by side, as a base64 PNG."""
    from deepline.tasks.examples import png

    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    chosen = [frames[i] for i in picks]
    gap = np.full((chosen[0].shape[0], 4, 3), 255, dtype=np.uint8)
    row = np.concatenate([part for f in chosen for part in (f, gap)][:-1], axis=1)
    return png(row)


def _write_png(data: str, path: Path) -> Path:
    path.write_bytes(base64.b64decode(data))
    return path


def plot_returns(returns: list[float], path: Path) -> Path:
    """A histogram of the episodes' returns, with their mean marked."""
    from matplotlib.figure import Figure as MplFigure

    from deepline import plots

    values = np.asarray(returns, dtype=float)
    fig = MplFigure(figsize=(6.0, 3.2), dpi=plots.DPI)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#4c72b0")
    ax.axvline(values.mean(), color="#c44e52", linestyle="--", label=f"mean {values.mean():.1f}")
    ax.set_xlabel("return")
    ax.set_ylabel("episodes")
    ax.legend()
    fig.tight_layout()
    return plots.save_figure(fig, path)
