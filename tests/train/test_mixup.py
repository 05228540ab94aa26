"""Mixup: the model sees convex combinations of pairs of a batch's examples and learns the same
combination of their losses; it resumes exactly and refuses what it cannot combine with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepline.config import load_config
from deepline.errors import ConfigError
from deepline.training.experiment import build_experiment, run_training
from tests.conftest import tiny_config
from tests.tasks.test_forecasting import forecast_config, write_series
from tests.trust.conftest import romeo_config


def recover_pairs(x: torch.Tensor, mixed: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The weight ``lam`` and partners ``j`` with ``mixed[i] = lam x[i] + (1 - lam) x[j]``,
    found by least squares over every candidate partner (the one that fits exactly wins)."""
    flat, target = x.flatten(1).double(), mixed.flatten(1).double()
    weights, partners = [], []
    for i in range(len(x)):
        if torch.allclose(target[i], flat[i], atol=1e-6):  # paired with itself
            partners.append(i)
            continue
        gap = flat[i] - flat  # (N, D): x_i - x_j for every j
        lam = ((target[i] - flat) * gap).sum(1) / gap.square().sum(1).clamp_min(1e-12)
        residual = (flat + lam[:, None] * gap - target[i]).norm(dim=1)
        residual[i] = float("inf")
        j = int(residual.argmin())
        assert residual[j] < 1e-4, f"example {i} is no mixture of two examples"
        weights.append(float(lam[j]))
        partners.append(j)
    assert weights, "every example was paired with itself"
    assert max(weights) - min(weights) < 1e-5, "one weight per batch"
    return weights[0], torch.tensor(partners)


def test_the_model_learns_mixed_pairs_against_their_mixed_losses(tmp_path: Path) -> None:
    raw = tiny_config(epochs=1, mixup={"alpha": 40.0})  # lam close to 0.5: every pair visible
    exp = build_experiment(load_config(raw), tmp_path)
    exp.trainer.fire("fit_start")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((32, *exp.data.train.x.shape[1:]), generator=generator)
    y = exp.data.train.y[:32]
    seen: list[torch.Tensor] = []

    def model(inputs: torch.Tensor) -> torch.Tensor:
        seen.append(inputs)
        return exp.model(inputs)

    loss = exp.trainer.objective(model, (x, y))
    lam, partner = recover_pairs(x, seen[0])
    assert sorted(partner.tolist()) == list(range(32)), "the partners are a shuffle of the batch"
    assert 0.3 < lam < 0.7
    outputs = exp.model(seen[0])
    expected = lam * exp.task.loss(outputs, y) + (1 - lam) * exp.task.loss(outputs, y[partner])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_weights_follow_the_beta_distribution(tmp_path: Path) -> None:
    exp = build_experiment(load_config(tiny_config(mixup={"alpha": 0.2})), tmp_path)
    mixup = next(c for c in exp.trainer.callbacks if type(c).__name__ == "Mixup")
    torch.manual_seed(0)
    draws = torch.stack([mixup.weights.sample() for _ in range(4000)])
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    assert draws.mean().item() == pytest.approx(0.5, abs=0.03)
    # Beta(0.2, 0.2) puts most of its mass near 0 and 1: little mixing
    assert ((draws < 0.1) | (draws > 0.9)).float().mean().item() > 0.6


def test_digits_are_learnt_with_mixup_regression_too(tmp_path: Path) -> None:
    exp = run_training(load_config(tiny_config(epochs=4, mixup={"alpha": 0.2})), tmp_path / "c")
    assert exp.trainer.logs["val/accuracy"] > 0.8
    raw = {"name": "diabetes", "data": {"name": "diabetes"}, "model": {"name": "mlp"},
           "train": {"epochs": 2, "tensorboard": False, "mixup": {"alpha": 0.4}}}  # fmt: skip
    exp = run_training(load_config(raw), tmp_path / "r")
    assert torch.isfinite(torch.tensor(exp.trainer.logs["val/loss"]))


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"method": {"name": "fixmatch"}}, "train.method cannot be combined with train.mixup"),
        ({"distill": {"teacher": "runs/x"}}, "train.distill cannot be combined with train.mixup"),
        ({"privacy": {"noise_multiplier": 1.0}}, "train.privacy cannot .* with train.mixup"),
    ],
)
def test_methods_that_set_the_objective_are_refused(train: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_config(mixup={"alpha": 0.2}, **train))


def test_tasks_that_cannot_be_mixed_are_named(tmp_path: Path) -> None:
    tokens = romeo_config(mixup={"alpha": 0.2})
    with pytest.raises(ConfigError, match=r"mixup cannot be combined with task language_mod.*"
                       "discrete"):  # fmt: skip
        run_training(load_config(tokens), tmp_path / "t")
    series = forecast_config(write_series(tmp_path / "a.csv"), mixup={"alpha": 0.2})
    with pytest.raises(ConfigError, match=r"mixup cannot be combined with task forecast.*"
                       "no pair of losses"):  # fmt: skip
        run_training(load_config(series), tmp_path / "f")
