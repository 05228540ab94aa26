"""A federated client: deepline's trainer on one partition of the data, as a Flower client.

Each round the client receives the global weights, measures them on its own examples (the
local evaluation), trains ``federated.local_epochs`` epochs with the experiment's optimizer
(plus FedProx's proximal term, adversarial examples, ... as the config says) and returns its
weights. Only floating-point tensors travel: integer buffers (BatchNorm's batch counters)
stay local.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn

from deepline.config import ExperimentConfig, load_config
from deepline.data import DataSplits
from deepline.data.meta import Split
from deepline.errors import ConfigError
from deepline.evaluate.evaluate import score
from deepline.federated.partition import partition
from deepline.tasks import Task, build_task, task_class
from deepline.training.callbacks import NonFiniteGuard
from deepline.training.callbacks.proximal import ProximalTerm
from deepline.training.events import Callback
from deepline.training.experiment import example_methods
from deepline.training.loop import Trainer


def exchanged(model: nn.Module) -> list[str]:
    """The names of the tensors a round exchanges, in order: parameters and float buffers."""
    return [k for k, v in model.state_dict().items() if v.is_floating_point()]


def get_weights(model: nn.Module) -> list[np.ndarray]:
    state = model.state_dict()
    return [state[k].detach().cpu().numpy().copy() for k in exchanged(model)]


def set_weights(model: nn.Module, arrays: list[np.ndarray]) -> None:
    names = exchanged(model)
    if len(arrays) != len(names):
        raise ValueError(f"expected {len(names)} arrays of weights, received {len(arrays)}")
    state = model.state_dict()
    with torch.no_grad():
        for name, array in zip(names, arrays, strict=True):
            state[name].copy_(torch.as_tensor(array).reshape(state[name].shape))


def client_parts(data: DataSplits, config: ExperimentConfig) -> list[np.ndarray]:
    """The training split's indices of every client (``federated.partition``)."""
    fed = config.federated
    assert fed is not None
    labels = data.train.y
    if labels.dim() == 1:
        return partition(labels.numpy(), fed.clients, fed.partition, config.seed)
    if fed.partition.scheme != "iid":
        raise ConfigError(
            f"federated.partition.scheme {fed.partition.scheme} deals examples by class: it "
            f"needs one class label per example, and dataset {config.data.name} has targets "
            f"of shape {tuple(labels.shape)} (use scheme: iid)"
        )
    return partition(np.zeros(len(labels), np.int64), fed.clients, fed.partition, config.seed)


def client_share(data: DataSplits, config: ExperimentConfig, client: int) -> Split:
    """Client ``client``'s examples of the training split."""
    fed = config.federated
    assert fed is not None
    if not 0 <= client < fed.clients:
        raise ConfigError(f"client {client} does not exist: federated.clients is {fed.clients}")
    index = torch.from_numpy(client_parts(data, config)[client])
    return Split(data.train.x[index], data.train.y[index])


@dataclass
class Site:
    """One client's data, task and model (kept between rounds)."""

    config: ExperimentConfig
    client: int
    task: Task
    model: nn.Module
    local: DataSplits  # the client's share as the training split, nothing to validate on

    @classmethod
    def open(cls, config: ExperimentConfig, client: int, data: DataSplits) -> Site:
        task = build_task(config.task, data.meta)
        torch.manual_seed(config.seed)
        model = task.build_model(config.model)  # its weights come from the server each round
        if config.model.freeze:
            from deepline.training.init_from import freeze

            freeze(model, config.model.freeze)
        share = client_share(data, config, client)
        empty = Split(share.x[:0], share.y[:0])
        return cls(config, client, task, model, DataSplits(share, empty, empty, data.meta))

    @property
    def weight(self) -> int:
        """This client's weight in the average: its examples, or 1 under client-level DP
        (the noise is sized for one client's update)."""
        fed = self.config.federated
        assert fed is not None
        return 1 if fed.privacy is not None else len(self.local.train)

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        cfg = self.config
        return score(self.task, self.model, self.local.train, cfg.eval.batch_size).compute()

    def train(self, round_: int, mu: float) -> dict[str, float]:
        """Local epochs from the weights the model holds; the mean training loss and time."""
        fed, cfg = self.config.federated, self.config
        assert fed is not None
        batch = fed.batch_size or cfg.train.batch_size
        local = cfg.train.model_copy(
            update={"epochs": fed.local_epochs, "max_steps": None, "tensorboard": False}
        )
        seed = cfg.seed + 100_003 * round_ + self.client  # its own shuffles, every round
        torch.manual_seed(seed)
        run_cfg = cfg.model_copy(update={"seed": seed, "train": local})
        train, _ = self.task.loaders(run_cfg, self.local, batch, 0, 1)
        trainer = Trainer(self.model, self.task, train, None, local, self._callbacks(mu), seed)
        started = time.perf_counter()
        trainer.fit()
        if trainer.stop_reason:
            raise RuntimeError(
                f"client {self.client}: local training stopped: {trainer.stop_reason}"
            )
        return {
            "train_loss": trainer.logs.get("train/loss_epoch", float("nan")),
            "train_seconds": time.perf_counter() - started,
        }

    def _callbacks(self, mu: float) -> list[Callback]:
        callbacks: list[Callback] = [NonFiniteGuard("stop")]
        if mu > 0:
            callbacks.append(ProximalTerm(mu))
        return [*callbacks, *example_methods(self.config.train)]


def flower_client(client: int, open_site: Callable[[], Site]) -> Any:
    """Client ``client`` as a Flower client (``NumPyClient``); its data and model are opened
    (``open_site``) only when it trains or evaluates, not when asked who it is."""
    from flwr.client import NumPyClient

    class DeeplineClient(NumPyClient):
        def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
            return {"partition-id": client}

        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return get_weights(open_site().model)

        def fit(
            self, parameters: list[np.ndarray], config: dict[str, Any]
        ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
            site = open_site()
            set_weights(site.model, parameters)
            before = site.evaluate()  # the global model on this client's data
            trained = site.train(int(config.get("round", 1)), float(config.get("proximal_mu", 0)))
            metrics = {f"local_{k}": float(v) for k, v in before.items()}
            return get_weights(site.model), site.weight, {**metrics, **trained}

        def evaluate(
            self, parameters: list[np.ndarray], config: dict[str, Any]
        ) -> tuple[float, int, dict[str, Any]]:
            site = open_site()
            set_weights(site.model, parameters)
            metrics = site.evaluate()
            return float(metrics.get("loss", 0.0)), site.weight, metrics

    return DeeplineClient().to_client()


@cache
def _catalog_data(config_yaml: str) -> DataSplits:
    """The dataset a node reads from its own data folder (once per process)."""
    config = load_config_text(config_yaml)
    return task_class(config.task.name).load_data(config.data)


def load_config_text(text: str) -> ExperimentConfig:
    import yaml

    return load_config(yaml.safe_load(text))


def node_partition(node_config: dict[str, Any]) -> int:
    """A deployed SuperNode's client number (``--node-config 'partition-id=N'``)."""
    if "partition-id" not in node_config:
        raise ConfigError(
            "a SuperNode needs --node-config 'partition-id=N' (its client number, from 0 to "
            "federated.clients - 1)"
        )
    return int(node_config["partition-id"])


def node_site(config_yaml: str, node_config: dict[str, Any]) -> Site:
    """A deployed SuperNode's site: its share of the dataset, read from its own ``data-dir``
    (node config) when given."""
    config = load_config_text(config_yaml)
    if "data-dir" in node_config:
        config.data.data_dir = str(node_config["data-dir"])
    data = _catalog_data(config.to_yaml())
    return _site(config.to_yaml(), node_partition(node_config), data)


_SITES: dict[tuple[str, int], Site] = {}


def _site(config_yaml: str, client: int, data: DataSplits) -> Site:
    key = (config_yaml, client)
    if key not in _SITES:
        _SITES[key] = Site.open(load_config_text(config_yaml), client, data)
    return _SITES[key]


def simulated_site(config: ExperimentConfig, client: int, data: DataSplits | None) -> Site:
    """A simulated client's site: its share of ``data`` (or of the catalog dataset)."""
    text = config.to_yaml()
    return _site(text, client, data if data is not None else _catalog_data(text))
