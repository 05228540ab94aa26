"""The policy task: PPO on a Gymnasium environment, resumed exactly, served as trained, and clear
errors for environments, observations and methods it cannot take."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from deepline.config import load_config
from deepline.data.environments import EnvPool
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.errors import ConfigError, DataError, InputError
from deepline.evaluate.loading import load_trained
from deepline.models.q_network import QNetwork
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from deepline.tasks.policy import Policy, PolicyConfig
from deepline.tasks.replay import ReplayLoader
from deepline.tasks.rollouts import Observations, generalised_advantages
from deepline.training.checkpoint import list_checkpoints
from deepline.training.experiment import run_training
from tests.train.test_checkpoint import assert_same_weights, final_weights


def policy_config(**train: Any) -> dict[str, Any]:
    """A few PPO rollouts on CartPole: 2 environments x 16 steps, 4 batches a rollout."""
    return {
        "name": "cartpole",
        "data": {"name": "CartPole-v1"},
        "task": {"name": "policy", "n_envs": 2, "n_steps": 16, "ppo_epochs": 2,
                 "eval_every_steps": 64, "eval_episodes": 3, "clip_anneal": True},
        "model": {"name": "actor_critic", "hidden": [16]},
        "train": {"epochs": 3, "batch_size": 16, "num_threads": 1, "tensorboard": False,
                  "log_every_steps": 1, **train},
        "eval": {"batch_size": 8},
    }  # fmt: skip


def dqn_config(**train: Any) -> dict[str, Any]:
    """DQN on CartPole: 2 environments x 8 steps a phase, 4 updates a phase, a buffer of 50
    transitions (overwritten from the second epoch), the target copied every 24 steps."""
    raw = policy_config(**train)
    raw["task"] = {"name": "policy", "algorithm": "dqn", "n_envs": 2, "train_freq": 8,
                   "gradient_steps": 4, "learning_starts": 20, "buffer_size": 50,
                   "target_update_interval": 24, "eval_every_steps": 32, "eval_episodes": 3,
                   "double_q": True}  # fmt: skip
    raw["model"] = {"name": "q_network", "hidden": [16]}
    return raw


def val_returns(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["val/mean_return"] for r in rows if "val/mean_return" in r]


def dqn_qat_config(**train: Any) -> dict[str, Any]:
    """DQN trained quantization-aware: its target network must round as the policy does."""
    return dqn_config(qat={"observe_steps": 2}, **train)


@pytest.mark.parametrize(
    "make", [policy_config, dqn_config, dqn_qat_config], ids=["ppo", "dqn", "dqn-qat"]
)
def test_a_resumed_run_plays_and_learns_exactly_as_an_uninterrupted_one(
    make: Any, tmp_path: Path
) -> None:
    # checkpoints every 3 updates: most fall inside a rollout or phase (4 updates each)
    raw = make(checkpoint={"every_steps": 3, "keep_last": 50})
    full = run_training(load_config(raw), tmp_path / "full")
    part = run_training(load_config(raw), tmp_path / "part")
    checkpoints = list_checkpoints(part.run_dir / "checkpoints")
    kept = next(c for c in checkpoints if c.name == "step-00000021")  # the third epoch, mid-rollout
    for later in checkpoints[checkpoints.index(kept) + 1 :]:
        shutil.rmtree(later)
    resumed = run_training(None, run_dir=part.run_dir)
    assert resumed.trainer.step == full.trainer.step == 3 * 8
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))
    assert val_returns(part.run_dir)[-1] == val_returns(full.run_dir)[-1]
    assert resumed.trainer.logs == full.trainer.logs  # returns of training episodes too
    assert "train/episode_return" in full.trainer.logs
    replays = raw["task"].get("algorithm") == "dqn"  # its buffer and target network as tensors
    assert (kept / "loader.safetensors").is_file() == replays


def test_the_environment_pool_replays_to_the_same_state() -> None:
    pool = EnvPool("CartPole-v1", 3, seed=5)
    rng = np.random.default_rng(0)
    for _ in range(60):
        pool.step(rng.integers(2, size=3))
    again = EnvPool("CartPole-v1", 3, seed=5)
    again.load_state_dict(json.loads(json.dumps(pool.state_dict())))
    assert np.array_equal(again.observations, pool.observations)
    assert np.array_equal(again.returns, pool.returns) and again.finished == pool.finished
    actions = rng.integers(2, size=3)
    assert np.array_equal(again.step(actions).rewards, pool.step(actions).rewards)
    assert np.array_equal(again.observations, pool.observations)


def test_advantages_follow_the_gae_recursion_and_stop_at_episode_ends() -> None:
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends after step 1
    last = torch.tensor([0.2])
    gamma, lam = 0.9, 0.8
    got = generalised_advantages(rewards, values, dones, last, gamma, lam)[:, 0]
    d2 = 1 + gamma * 0.2 - 0.3
    d1 = 1 - 0.4  # no value after the end
    d0 = 1 + gamma * 0.4 - 0.5
    want = [d0 + gamma * lam * d1, d1, d2]
    torch.testing.assert_close(got, torch.tensor(want))


def test_the_ppo_loss_is_the_clipped_objective(tmp_path: Path) -> None:
    data = Policy.load_data(load_config(policy_config()).data)
    task = Policy(PolicyConfig(ent_coef=0.0, vf_coef=0.0, normalize_advantages=False), data.meta)
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5]]))
    outputs = torch.cat([logits, torch.zeros(2, 1)], dim=1)
    # action 0 was played with probability 0.5 and now has 0.9: ratio 1.8, clipped to 1.2
    old = torch.log(torch.tensor([0.5, 0.5]))
    targets = torch.stack([torch.tensor([0.0, 1.0]), old, torch.tensor([2.0, -1.0]),
                           torch.zeros(2), torch.full((2,), 0.2)], dim=1)  # fmt: skip
    want = -(min(2.0 * 1.8, 2.0 * 1.2) + min(-1.0 * 1.0, -1.0 * 1.0)) / 2
    assert float(task.loss(outputs, targets)) == pytest.approx(want)


def replay_loader(pool: EnvPool, model: torch.nn.Module, **settings: Any) -> ReplayLoader:
    options: dict[str, Any] = {
        "batch_size": 32, "phases_per_epoch": 1, "train_freq": 40, "gradient_steps": 1,
        "buffer_size": 1000, "learning_starts": 0, "target_update_interval": 10**6,
        "exploration": (1.0, 1.0, 1.0), "gamma": 0.9, "double": False, **settings,
    }  # fmt: skip
    loader = ReplayLoader(pool, Observations([0.0] * 4, [1.0] * 4), 2, **options)
    loader.attach(model)
    return loader


@pytest.mark.parametrize("double", [False, True])
def test_dqn_targets_are_the_target_networks_bellman_backup(double: bool) -> None:
    torch.manual_seed(0)
    model = QNetwork(4, 2, hidden=[8])
    frozen = copy.deepcopy(model)  # the target network: copied at the start, not since
    loader = replay_loader(EnvPool("CartPole-v1", 2, seed=0), model, double=double)
    loader._collect(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # the online network moves on
    x, y = loader._batch(0, 0)
    stored = loader.buffer.data
    rows = [int((stored["observation"][: loader.buffer.size] == row).all(1).nonzero()[0])
            for row in x]  # fmt: skip
    following = stored["next_observation"][rows]
    with torch.no_grad():
        q_next = frozen(following)[:, :2]
        pick = model(following)[:, :2].argmax(-1) if double else q_next.argmax(-1)
    best = q_next.gather(1, pick[:, None])[:, 0]
    want = stored["reward"][rows] + 0.9 * (1 - stored["terminal"][rows]) * best
    assert torch.equal(y[:, 0], stored["action"][rows].float())
    torch.testing.assert_close(y[:, 1], want)


def test_the_replay_buffer_keeps_every_transition_and_episode_end() -> None:
    pool = EnvPool("CartPole-v1", 2, seed=1)
    loader = replay_loader(pool, QNetwork(4, 2, hidden=[8]), buffer_size=64)
    loader._collect(0)  # 2 x 40 steps into 64 places: the oldest 16 overwritten
    buffer = loader.buffer
    assert (buffer.size, buffer.next, loader.env_steps) == (64, 16, 80)
    assert int(buffer.data["terminal"].sum()) <= len(pool.finished)
    assert torch.equal(buffer.data["reward"], torch.ones(64))  # CartPole: 1 a step
    # a transition's next observation is the following one of the same environment
    newest = (buffer.next - 2) % 64
    assert torch.equal(buffer.data["next_observation"][newest], torch.from_numpy(
        pool.observations[0]))  # fmt: skip


def test_epsilon_falls_linearly_and_the_target_is_copied_on_schedule() -> None:
    pool = EnvPool("CartPole-v1", 2, seed=2)
    loader = replay_loader(pool, QNetwork(4, 2, hidden=[8]), exploration=(1.0, 0.1, 0.5),
                           target_update_interval=24, train_freq=8)  # fmt: skip
    loader.total_phases = 10  # 160 steps: epsilon reaches 0.1 after 80
    assert [loader.epsilon(s) for s in (0, 40, 80, 160)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    loader._collect(0)  # 16 steps: copied at the start only
    assert loader.synced_at == 0
    loader._collect(1)  # steps 16 to 32: copied at 24
    assert loader.synced_at == 24


def test_dqn_step_counts_are_over_all_processes() -> None:
    """Each of two processes keeps half the buffer, starts learning after half the random
    steps and copies the target after half the interval of its own steps."""
    cfg = load_config(dqn_config())
    data = Policy.load_data(cfg.data)
    task = Policy(cfg.task, data.meta)  # type: ignore[arg-type]
    alone, _ = task.loaders(cfg, data, 16, 0, 1)
    shared, _ = task.loaders(cfg, data, 8, 1, 2)
    assert isinstance(alone, ReplayLoader) and isinstance(shared, ReplayLoader)
    assert (alone.buffer.capacity, shared.buffer.capacity) == (50, 25)
    assert (alone.learning_starts, shared.learning_starts) == (20, 10)
    assert (alone.target_update_interval, shared.target_update_interval) == (24, 12)


def test_the_data_are_the_environment_and_held_out_seeds() -> None:
    data = Policy.load_data(load_config(policy_config()).data)
    assert data.meta.codec == "features" and data.meta.input_shape == (4,)
    assert data.meta.classes == ["push_left", "push_right"]
    assert data.meta.feature_names[2] == "pole_angle"
    assert len(data.val) == len(data.test) == 100
    assert not set(data.val.y.tolist()) & set(data.test.y.tolist())


def test_unknown_and_unsupported_environments_are_named(tmp_path: Path) -> None:
    raw = policy_config()
    raw["data"]["name"] = "CartPol-v1"
    with pytest.raises(DataError, match=r"unknown environment 'CartPol-v1'.*CartPole-v1"):
        run_training(load_config(raw), tmp_path)
    raw["data"]["name"] = "Pendulum-v1"
    with pytest.raises(DataError, match="Box actions: the policy task learns discrete"):
        run_training(load_config(raw), tmp_path)


@pytest.mark.parametrize(
    "train",
    [
        {"privacy": {"noise_multiplier": 1.0}},
        {"adversarial": {"eps": 0.1}},
        {"mixup": {"alpha": 0.2}},
        {"accumulate": 2},
    ],
)
def test_methods_for_datasets_are_refused_by_name(train: dict[str, Any], tmp_path: Path) -> None:
    field = next(iter(train))
    with pytest.raises(ConfigError, match=f"train.{field} cannot be combined with task policy"):
        run_training(load_config(policy_config(**train)), tmp_path)


@pytest.mark.parametrize(
    ("task", "model", "message"),
    [
        ({"buffer_size": 10}, None, "task.buffer_size: settings of algorithm dqn"),
        ({"algorithm": "dqn", "clip_range": 0.1, "n_steps": 8}, None,
         "task.clip_range, task.n_steps: settings of algorithm ppo"),
        ({"algorithm": "dqn"}, "actor_critic",
         "model.name actor_critic cannot be combined with task.algorithm dqn"),
        ({}, "q_network", "model.name q_network cannot be combined with task.algorithm ppo"),
    ],
)  # fmt: skip
def test_each_algorithm_takes_its_own_settings_and_model(
    task: dict[str, Any], model: str | None, message: str, tmp_path: Path
) -> None:
    raw = policy_config()
    raw["task"] = {"name": "policy", "n_envs": 2, **task}
    raw["model"] = {"name": model or "actor_critic"}
    with pytest.raises(ConfigError, match=message):
        run_training(load_config(raw), tmp_path)


@pytest.fixture(scope="module")
def policy_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("policy")
    run = run_training(load_config(policy_config(epochs=2)), root / "runs")
    return run.run_dir, Path(export_run(run.run_dir)["bundle"])


def test_the_served_policy_acts_as_the_trained_model(policy_bundle: tuple[Path, Path]) -> None:
    run_dir, bundle = policy_bundle
    run = load_trained(run_dir)
    test = run.data.test
    with torch.no_grad():
        offline = run.model(test.x[:20])[:, :-1].argmax(-1).tolist()
    names = run.data.meta.classes
    raw = test.x[:20] * torch.tensor(run.data.meta.std) + torch.tensor(run.data.meta.mean)
    observations = [dict(zip(run.data.meta.feature_names, row)) for row in raw.tolist()]
    repository = bundle.parent / "repository"
    add_bundle(bundle, repository, "cartpole")
    with BackgroundServer(create_app(repository, ServeSettings())) as server:
        answer = httpx.post(f"{server.url}/predict/cartpole", json={"inputs": observations})
        assert answer.status_code == 200, answer.text
        served = [a[0]["action"] for a in answer.json()["predictions"]]
        assert served == [names[i] for i in offline]
        assert sum(p["probability"] for p in answer.json()["predictions"][0]) == pytest.approx(1)
        wrong = httpx.post(f"{server.url}/predict/cartpole", json={"inputs": [[0.1, 0.2]]})
        assert wrong.status_code == 400 and "must hold 4 numbers" in wrong.text
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200  # still up
    with pytest.raises(InputError, match="must hold 4 numbers"):
        Predictor(bundle).predict([[0.0, 0.0, 0.0]])


def test_a_served_dqn_gives_each_actions_value(tmp_path: Path) -> None:
    run = run_training(load_config(dqn_config(epochs=1)), tmp_path / "runs")
    bundle = Path(export_run(run.run_dir)["bundle"])
    x = run.data.test.x[:6]
    with torch.no_grad():
        q = run.trainer.eval_model(x)[:, :-1]
    raw = x * torch.tensor(run.data.meta.std) + torch.tensor(run.data.meta.mean)
    repository = tmp_path / "repository"
    add_bundle(bundle, repository, "dqn")
    with BackgroundServer(create_app(repository, ServeSettings())) as server:
        answer = httpx.post(f"{server.url}/predict/dqn", json={"inputs": raw.tolist()})
        assert answer.status_code == 200, answer.text
        first = [a[0] for a in answer.json()["predictions"]]
        assert [a["index"] for a in first] == q.argmax(-1).tolist()
        assert [a["probability"] for a in first] == [1.0] * 6  # the greedy policy
        assert [a["q_value"] for a in first] == pytest.approx(q.max(-1).values.tolist(), abs=1e-4)
        v2 = httpx.post(f"{server.url}/v2/models/dqn/infer", json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [6, 4], "data": raw.flatten().tolist()}
        ]})  # fmt: skip
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o for o in v2.json()["outputs"]}
        assert {"action", "q_values", "value"} <= set(outputs)
        assert outputs["q_values"]["data"] == pytest.approx(q.flatten().tolist(), abs=1e-4)


def test_play_reports_each_episode_and_writes_a_gif(
    policy_bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.test_cli import deepline

    _, bundle = policy_bundle
    gif = tmp_path / "episode.gif"
    code, out, err = deepline(["play", str(bundle), "--episodes", "3", "--gif", str(gif)], capsys)
    assert code == 0, err
    assert "mean return over 3 episodes" in out and gif.stat().st_size > 1000
    again = Predictor(bundle, "torch").play(episodes=3)  # the same seeds: the same episodes
    assert f"{again['mean_return']:.2f}" in out
    code, _, err = deepline(["play", str(bundle), "--env", "Acrobot-v1"], capsys)
    assert code == 2 and "observes 6 numbers and has 3 actions" in err
