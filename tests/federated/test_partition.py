"""Partitions of a training split over federated clients, the config's combinations, the
proximal term and the client-level accountant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepline.config import FederatedConfig, PartitionConfig, load_config
from deepline.errors import ConfigError
from deepline.federated.partition import label_histogram, partition
from deepline.federated.summary import client_epsilon
from deepline.training.privacy import accountant, epsilon_of

LABELS = np.repeat(np.arange(10), 60)  # 600 examples, 60 of each class
rng = np.random.default_rng(0)
rng.shuffle(LABELS)


@pytest.mark.parametrize("scheme", ["iid", "shards", "dirichlet"])
def test_every_example_goes_to_exactly_one_client_and_the_seed_fixes_the_deal(scheme: str) -> None:
    config = PartitionConfig(scheme=scheme)
    parts = partition(LABELS, 10, config, seed=3)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(LABELS)))
    assert all(len(p) > 0 for p in parts)
    again = partition(LABELS, 10, config, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition(LABELS, 10, config, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_iid_shares_are_equal_and_hold_every_class() -> None:
    parts = partition(LABELS, 10, PartitionConfig(scheme="iid"), seed=0)
    assert {len(p) for p in parts} == {60}
    histogram = label_histogram(LABELS, parts, 10)
    assert (histogram > 0).mean() > 0.9


def test_pathological_shards_give_each_client_at_most_two_labels() -> None:
    """McMahan et al.: sorted by label, 200 shards of 300 for 100 clients; here 20 of 30."""
    parts = partition(LABELS, 10, PartitionConfig(scheme="shards", shards_per_client=2), seed=0)
    assert {len(p) for p in parts} == {60}
    for p in parts:
        assert len(np.unique(LABELS[p])) <= 2


def test_dirichlet_skew_grows_as_alpha_shrinks() -> None:
    def skew(alpha: float) -> float:
        parts = partition(LABELS, 10, PartitionConfig(scheme="dirichlet", alpha=alpha), seed=0)
        histogram = label_histogram(LABELS, parts, 10).astype(float)
        shares = histogram / histogram.sum(axis=1, keepdims=True)
        return float(shares.max(axis=1).mean())  # the dominant class's share per client

    assert skew(0.1) > skew(1.0) > skew(100.0)
    assert skew(100.0) < 0.2


def test_the_histogram_counts_every_example() -> None:
    parts = partition(LABELS, 4, PartitionConfig(), seed=0)
    histogram = label_histogram(LABELS, parts, 10)
    assert histogram.shape == (4, 10)
    assert histogram.sum() == len(LABELS)
    assert (histogram.sum(axis=0) == 60).all()


def test_a_partition_that_leaves_a_client_without_data_is_refused() -> None:
    with pytest.raises(ConfigError, match="more than the 5 training examples"):
        partition(LABELS[:5], 6, PartitionConfig(), seed=0)
    with pytest.raises(ConfigError, match="more shards"):
        partition(LABELS[:30], 10, PartitionConfig(scheme="shards", shards_per_client=4), seed=0)
    with pytest.raises(ConfigError, match="left a client without data"):
        partition(LABELS[:12], 12, PartitionConfig(scheme="dirichlet", alpha=0.01), seed=0)


BASE = {"data": {"name": "digits"}, "model": {"name": "mlp"}}


@pytest.mark.parametrize(
    ("federated", "train", "message"),
    [
        ({"clients": 3, "clients_per_round": 5}, {}, "clients_per_round \\(5\\) is more than"),
        ({"strategy": "fedsgd"}, {}, "'fedavg', 'fedprox', 'fedadam' or 'fedyogi'"),
        ({"strategy": "fedprox"}, {}, "needs federated.proximal_mu"),
        ({"proximal_mu": 0.1}, {}, "use strategy fedprox"),
        (
            {"secure_aggregation": {"num_shares": 3}, "clients": 2, "clients_per_round": 2},
            {},
            "num_shares \\(3\\) is more than federated.clients_per_round",
        ),
        (
            {"secure_aggregation": {}, "privacy": {"noise_multiplier": 1, "clipping_norm": 1}},
            {},
            "side: server cannot clip",
        ),
        (
            {},
            {"privacy": {"noise_multiplier": 1.0}},
            "federated cannot be combined with train.privacy",
        ),
        ({}, {"ema": 0.99}, "federated cannot be combined with train.ema"),
    ],
)
def test_bad_federated_configs_name_the_field(federated: dict, train: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({**BASE, "federated": federated, "train": train})


def test_client_level_epsilon_is_the_sampled_gaussian_composed_over_rounds() -> None:
    fed = FederatedConfig(
        clients=100,
        clients_per_round=10,
        privacy={"noise_multiplier": 1.0, "clipping_norm": 1.0, "delta": 1e-3},
    )
    a = accountant("rdp")
    a.history = [(1.0, 0.1, 50)]
    assert client_epsilon(fed, 50) == pytest.approx(epsilon_of(a, 1e-3))
    assert client_epsilon(fed, 0) == 0.0
    assert 0 < client_epsilon(fed, 10) < client_epsilon(fed, 50) < client_epsilon(fed, 100)


def test_the_proximal_term_adds_mu_times_the_distance_to_the_global_weights() -> None:
    from deepline.training.callbacks.proximal import ProximalTerm

    model = nn.Linear(3, 2)

    class Trainer:  # what the callback reads of the trainer
        def __init__(self) -> None:
            self.model = model
            self.precision = type("P", (), {"scaler": torch.amp.GradScaler("cpu", enabled=False)})

    trainer = Trainer()
    term = ProximalTerm(mu=0.5)
    term.fit_start(trainer)  # type: ignore[arg-type]
    global_weights = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    x = torch.randn(4, 3)
    model.zero_grad()
    model(x).pow(2).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    term.after_backward(trainer)  # type: ignore[arg-type]
    # d/dw (mu/2)||w - w0||^2 = mu (w - w0), here 0.5 * 1.0 for every weight
    for p, g, w0 in zip(model.parameters(), plain, global_weights, strict=True):
        assert torch.allclose(p.grad, g + 0.5 * (p.detach() - w0))
        assert torch.allclose(p.grad - g, torch.full_like(g, 0.5))
