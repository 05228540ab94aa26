"""Deal a training split to federated clients: IID, McMahan et al. 2017's pathological
non-IID shards, or Dirichlet label skew (Hsu et al. 2019). Seeded: the same seed gives every
client the same examples, on any machine."""

from __future__ import annotations

import numpy as np

from deepline.config.federated import PartitionConfig
from deepline.errors import ConfigError

DIRICHLET_TRIES = 100  # redraws before a Dirichlet partition that leaves a client empty fails


def partition(
    labels: np.ndarray, clients: int, config: PartitionConfig, seed: int
) -> list[np.ndarray]:
    """The indices of each client's examples (sorted), one array per client.

    ``labels`` are the class indices of the training split (only the label-skewed schemes
    read them). Raises a ConfigError when a client would get no example.
    """
    n = len(labels)
    if n < clients:
        raise ConfigError(
            f"federated.clients ({clients}) is more than the {n} training examples: "
            "some clients would have no data"
        )
    rng = np.random.default_rng(seed)
    if config.scheme == "iid":
        parts = np.array_split(rng.permutation(n), clients)
    elif config.scheme == "shards":
        parts = _shards(labels, clients, config.shards_per_client, rng)
    else:
        parts = _dirichlet(labels, clients, config.alpha, rng)
    return [np.sort(p) for p in parts]


def label_histogram(labels: np.ndarray, parts: list[np.ndarray], classes: int) -> np.ndarray:
    """(clients, classes) counts: how many examples of each class each client holds."""
    return np.stack([np.bincount(labels[p], minlength=classes) for p in parts])


def _shards(
    labels: np.ndarray, clients: int, per_client: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Sort by label, cut into ``clients * per_client`` equal shards, deal them at random."""
    count = clients * per_client
    if count > len(labels):
        raise ConfigError(
            f"federated.partition: {clients} clients x {per_client} shards is more shards than "
            f"the {len(labels)} training examples"
        )
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, count)
    dealt = rng.permutation(count).reshape(clients, per_client)
    return [np.concatenate([shards[s] for s in row]) for row in dealt]


def _dirichlet(
    labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Each class's examples split over the clients in Dirichlet(alpha) proportions; drawn
    again while some client gets nothing."""
    for _ in range(DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
        dealt = [np.concatenate(p) for p in parts]
        if min(len(p) for p in dealt) > 0:
            return dealt
    raise ConfigError(
        f"federated.partition: Dirichlet(alpha={alpha}) left a client without data in "
        f"{DIRICHLET_TRIES} draws for {clients} clients and {len(labels)} examples: raise "
        "alpha or use fewer clients"
    )
