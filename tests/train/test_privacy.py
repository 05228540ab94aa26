"""DP-SGD from the config: epsilon confirmed by a second accountant, clipping bounded,
combinations refused by name, layers DP cannot train named, exact resume of the budget."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from deepline.config import load_config
from deepline.deploy.export import export_run
from deepline.errors import ConfigError
from deepline.runs import read_json
from deepline.training.events import Callback
from deepline.training.experiment import build_experiment, run_training
from deepline.training.privacy import PoissonLoader
from tests.conftest import tiny_config


def dp_config(**privacy: Any) -> dict[str, Any]:
    raw = tiny_config(epochs=2, batch_size=64, lr=0.05, optimizer="sgd")
    raw["model"] = {"name": "mlp", "hidden": [32]}
    raw["train"]["privacy"] = {"target_epsilon": 2.0, "delta": 1e-5, "max_grad_norm": 1.0,
                               **privacy}  # fmt: skip
    return raw


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_training(load_config(dp_config()), tmp_path_factory.mktemp("dp")).run_dir


def test_epsilon_agrees_with_google_dp_accounting(dp_run: Path) -> None:
    """The RDP accountant's epsilon, recomputed from the saved sampling rate, noise multiplier
    and step count by Google's dp-accounting (an independent implementation)."""
    import dp_accounting
    from dp_accounting import rdp

    status = read_json(dp_run / "status.json")
    last, steps = status["last"], status["steps"]
    records = [json.loads(line) for line in (dp_run / "metrics.jsonl").read_text().splitlines()]
    sample_rate = 64 / 1294  # the digits' training split
    accountant = rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(
        sample_rate, dp_accounting.GaussianDpEvent(last["privacy/noise_multiplier"])
    )
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    theirs = accountant.get_epsilon(1e-5)
    assert last["privacy/epsilon"] == pytest.approx(theirs, rel=0.01)
    assert last["privacy/epsilon"] <= 2.0 * 1.01  # the target, reached at the end
    assert 0 < last["privacy/epsilon_prv"] <= last["privacy/epsilon"] * 1.05
    epochs = [r for r in records if "privacy/epsilon" in r]
    assert len(epochs) == 2 and epochs[0]["privacy/epsilon"] < epochs[1]["privacy/epsilon"]
    bundle = read_json(Path(export_run(dp_run, checkpoint="last")["bundle"]) / "bundle.json")
    privacy = bundle["privacy"]
    assert privacy["epsilon"] == pytest.approx(last["privacy/epsilon"], rel=1e-9)
    assert privacy["steps"] == steps and privacy["max_grad_norm"] == 1.0
    assert "differentially private with respect to one training example" in privacy["statement"]


def test_clipped_per_example_gradients_stay_within_the_norm(tmp_path: Path) -> None:
    config = load_config(dp_config(max_grad_norm=0.1))
    trainer = build_experiment(config, tmp_path).trainer
    for cb in trainer.callbacks:
        cb.fit_start(trainer) if type(cb).__name__ == "DifferentialPrivacy" else None
    x, y = next(iter(trainer.train_loader))
    trainer.task.step_loss(trainer.forward_model, (x, y)).backward()
    optimizer = trainer.optimizer
    assert optimizer.pre_step()  # clips each example's gradient, adds noise
    per_example = torch.stack([
        p.grad_sample.reshape(len(x), -1).norm(dim=1) for p in optimizer.params
    ]).norm(dim=0)  # fmt: skip
    factor = (0.1 / (per_example + 1e-6)).clamp(max=1.0)
    assert float((per_example * factor).max()) <= 0.1 + 1e-6
    assert float(per_example.max()) > 0.1  # the bound mattered


def test_per_example_gradients_are_each_examples_own_gradient(tmp_path: Path) -> None:
    """Clipping is only as good as the per-example gradients it clips: a CNN's, in the
    trainer's default setup (channels-last memory included), equal the gradient of each
    example's loss alone."""
    raw = dp_config()
    raw["model"] = {"name": "small_cnn", "channels": [4, 8], "hidden": 16}
    raw["data"]["image_size"] = [16, 16]
    config = load_config(raw)
    assert config.train.channels_last  # the default layout, which DP must handle
    trainer = build_experiment(config, tmp_path).trainer
    x, y = (t[:6] for t in next(iter(trainer.train_loader)))
    x = trainer.layout(x)
    plain = copy.deepcopy(trainer.model)  # before Opacus' hooks: autograd, one example at once
    alone = [
        torch.autograd.grad(trainer.task.loss(plain(x[i : i + 1]), y[i : i + 1]),
                            list(plain.parameters()))
        for i in range(len(y))
    ]  # fmt: skip
    for cb in trainer.callbacks:
        cb.fit_start(trainer) if type(cb).__name__ == "DifferentialPrivacy" else None
    trainer.task.step_loss(trainer.forward_model, (x, y)).backward()
    for i, grads in enumerate(alone):
        for p, g in zip(trainer.model.parameters(), grads):
            torch.testing.assert_close(p.grad_sample[i], g, rtol=1e-4, atol=1e-6)


def test_poisson_batches_vary_and_are_a_pure_function_of_the_position() -> None:
    x, y = torch.randn(1000, 3), torch.zeros(1000, dtype=torch.long)
    loader = PoissonLoader(x, y, batch_size=100, seed=3)
    sizes = [len(b[1]) for b in loader]
    assert len(sizes) == 10 and len(set(sizes)) > 1 and 60 < sum(sizes) / 10 < 140
    again = PoissonLoader(x, y, batch_size=100, seed=3)
    again.load_state_dict({"epoch": 0, "position": 4})
    first = next(iter(again))[0]
    assert torch.equal(first, list(PoissonLoader(x, y, 100, seed=3))[4][0])


@pytest.mark.parametrize(
    "train,field",
    [
        ({"compile": True}, "compile"),
        ({"accumulate": 2}, "accumulate"),
        ({"adversarial": {"attack": "fgsm", "eps": 0.1}}, "adversarial"),
        ({"precision": "fp16"}, "precision"),
        ({"grad_clip": 1.0}, "grad_clip"),
        ({"mixup": {"alpha": 0.2}}, "mixup"),
    ],
)
def test_methods_that_cannot_combine_with_dp_are_named(train: dict, field: str) -> None:
    raw = dp_config()
    raw["train"].update(train)
    with pytest.raises(ConfigError, match=f"train.privacy cannot be combined with train.{field}"):
        load_config(raw)


def test_batch_norm_is_refused_with_the_fix(tmp_path: Path) -> None:
    raw = dp_config()
    raw["model"] = {"name": "lenet", "channels": [4, 8], "hidden": 16}  # has BatchNorm
    with pytest.raises(ConfigError, match=r"BatchNorm.*GroupNorm"):
        run_training(load_config(raw), tmp_path)


def test_a_killed_dp_run_resumes_with_the_same_epsilon(tmp_path: Path, dp_run: Path) -> None:
    """Stopped after one epoch and resumed, the run spends what the uninterrupted one did."""
    raw = dp_config()
    raw["train"]["checkpoint"] = {"every_steps": 5}

    class Killed(Exception):
        pass

    class KillAt(Callback):
        order = 99  # after the checkpoint of this step

        def step_end(self, trainer: Any) -> None:
            if trainer.step == 25:
                raise Killed

    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        run_training(load_config(raw), run_dir=run_dir, extra_callbacks=[KillAt()])
    resumed = run_training(load_config(raw), run_dir=run_dir)
    ours = read_json(resumed.run_dir / "status.json")["last"]["privacy/epsilon"]
    straight = read_json(dp_run / "status.json")["last"]["privacy/epsilon"]
    assert ours == pytest.approx(straight, rel=1e-9)


def test_training_stops_before_the_target_epsilon_would_be_passed() -> None:
    """At an epoch's start, if one more epoch would spend more than the target, stop."""
    from types import SimpleNamespace

    from deepline.config import PrivacyConfig
    from deepline.training.events import StopTraining
    from deepline.training.privacy import DifferentialPrivacy

    dp = DifferentialPrivacy(PrivacyConfig(target_epsilon=3.0))
    dp.noise_multiplier, dp.sample_rate = 1.0, 0.05
    trainer = SimpleNamespace(step=10, total_steps=10_000, train_loader=list(range(20)))
    dp.accountants["rdp"].history = [(1.0, 0.05, 10)]
    dp.epoch_start(trainer)  # 30 steps at noise 1.0 and rate 0.05: epsilon 2.74, under 3
    dp.accountants["rdp"].history = [(1.0, 0.05, 2000)]
    with pytest.raises(StopTraining, match="privacy budget"):
        dp.epoch_start(trainer)


def _train(config: dict[str, Any], folder: Path, *args: str, **env: str) -> Path:
    """``deepline train`` in a new process (``--nproc 2``: two gloo processes by torchrun)."""
    import os
    import signal
    import subprocess
    import sys

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dp.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "deepline", "train", str(folder / "dp.yaml"), "--run-dir",
               str(folder / "run"), *args]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True,
                          **pipes) as process:  # type: ignore[call-overload]  # fmt: skip
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # a hung run: stop torchrun and its workers too
            os.killpg(process.pid, signal.SIGKILL)
            raise
    done = subprocess.CompletedProcess(command, process.returncode, "", stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "run"


def _losses(run: Path) -> list[float]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in records if "train/loss" in r]


@pytest.mark.multiproc
def test_dp_sgd_on_two_processes_is_one_dp_sgd_step_over_the_global_batch(
    tmp_path: Path, dp_run: Path
) -> None:
    # every example in every batch (sampling rate 1), clipping that never bites and noise far
    # below the gradients: one and two processes then take the same steps, so the two halves'
    # clipped sums are added (not averaged, not noised twice) and scaled by the global batch
    exact = dp_config(noise_multiplier=1e-9, max_grad_norm=1000.0, target_epsilon=None)
    exact["train"].update(batch_size=2048, epochs=3, log_every_steps=1)
    exact["model"]["dropout"] = 0.0  # dropout masks differ between processes
    one = _losses(_train(exact, tmp_path / "one"))
    two = _losses(_train(exact, tmp_path / "two", "--nproc", "2"))
    assert len(one) == len(two) == 3
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-4, (one, two)
    # with real noise and Poisson sampling, the budget is the one-process run's: the same
    # sampling rate over the whole training set, the same noise, the same number of steps
    noisy = _train(dp_config(), tmp_path / "noisy", "--nproc", "2")
    ours, theirs = read_json(noisy / "status.json")["last"], read_json(dp_run / "status.json")
    assert ours["privacy/epsilon"] == pytest.approx(theirs["last"]["privacy/epsilon"], rel=1e-9)
    assert ours["val/accuracy"] > 0.5


NAN_ON_ONE_PROCESS = """
import os, torch
from torch import nn

class NaNOnRank1(nn.Module):
    \"\"\"A linear digits model whose third training batch gives NaN on process 1 only.\"\"\"

    def __init__(self):
        super().__init__()
        self.linear, self.calls = nn.Linear(64, 10), 0

    def forward(self, x):
        out = self.linear(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls == 3 and os.environ.get("RANK") == "1":
                out = out * float("nan")
                open(os.environ["NAN_MARKER"], "w").close()
        return out
"""


@pytest.mark.multiproc
def test_a_non_finite_loss_on_one_process_is_skipped_by_both(tmp_path: Path) -> None:
    """Under DP-SGD gradients meet only in the optimizer's step: both processes must agree to
    skip it, or one would wait for the other forever."""
    (tmp_path / "nan_model.py").write_text(NAN_ON_ONE_PROCESS)
    config = dp_config(noise_multiplier=1.0, target_epsilon=None)
    config["model"] = {"name": "custom", "target": "nan_model:NaNOnRank1"}
    config["train"].update(epochs=1, non_finite={"policy": "skip"})
    marker = tmp_path / "nan_injected"
    run = _train(config, tmp_path, "--nproc", "2", PYTHONPATH=str(tmp_path),
                 NAN_MARKER=str(marker))  # fmt: skip
    assert marker.exists()  # process 1 did meet a NaN loss
    assert read_json(run / "status.json")["status"] == "completed"
