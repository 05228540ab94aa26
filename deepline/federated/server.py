"""The federated server: a Flower strategy averaging the clients' weights, and a deepline run
folder that keeps the global model.

After every round the server measures the global model on the validation split, appends the
round to ``metrics.jsonl`` and writes an atomic checkpoint (the weights, the strategy's own
state such as FedAdam's moments, and every RNG), so a killed server resumes from its last
complete round. ``federated.json`` holds what the report and the audit card show: the
partition's label histogram, the strategy, the rounds and the client-level privacy spent.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.server.strategy import Strategy
from rich.console import Console

from deepline.config import ExperimentConfig
from deepline.data import DataSplits
from deepline.errors import ConfigError
from deepline.evaluate.evaluate import score
from deepline.federated.client import client_parts, exchanged, get_weights, set_weights
from deepline.federated.partition import label_histogram
from deepline.federated.summary import ARTIFACT, client_epsilon, summary_at
from deepline.runs import environment_info, write_json
from deepline.tasks import build_task
from deepline.training.callbacks.early_stopping import is_better
from deepline.training.checkpoint import (
    checkpoint_name,
    list_checkpoints,
    load_latest,
    prune_checkpoints,
    save_checkpoint,
)
from deepline.training.seed import rng_state, seed_everything, set_rng_state

STRATEGY_STATE = ("current_weights", "m_t", "v_t")  # FedOpt's (FedAdam, FedYogi) moments


class FederatedServer:
    """Builds the strategy and keeps the run folder, round after round."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, data: DataSplits) -> None:
        assert config.federated is not None
        self.config, self.fed, self.run_dir, self.data = config, config.federated, run_dir, data
        run_dir.mkdir(parents=True, exist_ok=True)  # on a SuperLink's machine, made here
        seed_everything(config.seed)
        self.task = build_task(config.task, data.meta)
        torch.manual_seed(config.seed)
        self.model = self.task.build_model(config.model)
        self.first_round = 0  # rounds done before this process started
        self.best: tuple[float, str] | None = None
        self.strategy_state: dict[str, list[np.ndarray]] = {}
        self.fit_metrics: dict[str, float] = {}
        self.started = time.perf_counter()
        self.elapsed_before = 0.0
        self.checkpoints = run_dir / "checkpoints"
        self.console = Console(stderr=True)
        self.described = self.describe()
        if config.model.init_from is not None:  # the clients start from the global weights
            from deepline.training.init_from import load_initial_weights

            load_initial_weights(self.model, config.model.init_from)
        if self.fed.privacy is not None:
            refuse_batch_norm(self.model)
        if list_checkpoints(self.checkpoints):
            self._resume()
        else:  # a restart before the first round's checkpoint logs every round anew
            self._truncate_metrics(-1)

    # ------------------------------------------------------------------ Flower
    def strategy(self) -> Any:
        """The configured Flower strategy, wrapped for client-level DP when asked."""
        from flwr.common import ndarrays_to_parameters
        from flwr.server import strategy as flwr_strategy

        fed = self.fed
        common: dict[str, Any] = {
            "fraction_fit": fed.clients_per_round / fed.clients,
            "min_fit_clients": fed.clients_per_round,
            # with privacy, every client must be there: the accountant's rate is per/clients
            "min_available_clients": fed.clients if fed.privacy else fed.clients_per_round,
            "fraction_evaluate": 0.0,  # clients measure the global model in each fit
            "min_evaluate_clients": 0,
            "evaluate_fn": self.end_of_round,
            "on_fit_config_fn": self.fit_config,
            "fit_metrics_aggregation_fn": self.aggregate_fit_metrics,
            "initial_parameters": ndarrays_to_parameters(get_weights(self.model)),
            "accept_failures": True,
        }
        if fed.strategy == "fedavg":
            strategy = flwr_strategy.FedAvg(**common)
        elif fed.strategy == "fedprox":
            strategy = flwr_strategy.FedProx(**common, proximal_mu=fed.proximal_mu)
        else:
            cls = flwr_strategy.FedAdam if fed.strategy == "fedadam" else flwr_strategy.FedYogi
            strategy = cls(**common, eta=fed.server_lr, tau=fed.server_tau)
            for name, arrays in self.strategy_state.items():
                setattr(strategy, name, arrays)
        self.inner = strategy
        privacy = fed.privacy
        if privacy is None:
            return strategy
        wrapper = (
            flwr_strategy.DifferentialPrivacyServerSideFixedClipping
            if privacy.side == "server"
            else flwr_strategy.DifferentialPrivacyClientSideFixedClipping
        )
        return wrapper(
            strategy, privacy.noise_multiplier, privacy.clipping_norm, fed.clients_per_round
        )

    def workflow(self) -> Any:
        """Flower's default workflow, with SecAgg+ for the fit rounds when configured."""
        from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

        secagg = self.fed.secure_aggregation
        if secagg is None:
            return DefaultWorkflow()
        return DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=secagg.num_shares,
                reconstruction_threshold=secagg.reconstruction_threshold,
                clipping_range=secagg.clipping_range,
                quantization_range=secagg.quantization_range,
                # each client's weights are scaled by its weight / max_weight: the largest a
                # client reports (its examples; 1 each under client-level DP)
                max_weight=1.0 if self.fed.privacy else float(max(self.described["sizes"])),
            )
        )

    def main(self, grid: Any, context: Any) -> None:
        """The ServerApp's body: the remaining rounds, then the run's final records."""
        from flwr.server import LegacyContext, ServerConfig

        from deepline.federated.sampling import SeededClientManager

        remaining = self.fed.rounds - self.first_round
        self.write_run_files()
        self.write_status("running")
        if remaining > 0:
            clients = SeededClientManager(self.config.seed)
            strategy = ResumedRounds(self.strategy(), self.first_round, clients)
            legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=remaining),
                                   strategy=strategy, client_manager=clients)  # fmt: skip
            self.workflow()(grid, legacy)
        self.write_status("completed")

    def fit_config(self, server_round: int) -> dict[str, Any]:
        self.fit_metrics = {"answered": 0.0}  # until this round's clients are aggregated
        return {"round": server_round}

    def aggregate_fit_metrics(self, results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        """Example-weighted means of the clients' metrics, and how many answered."""
        total = sum(n for n, _ in results) or 1
        keys = {k for _, m in results for k, v in m.items() if isinstance(v, int | float)}
        means = {k: sum(n * float(m.get(k, 0.0)) for n, m in results) / total for k in keys}
        self.fit_metrics = {**means, "answered": float(len(results))}
        return self.fit_metrics

    def end_of_round(
        self, server_round: int, parameters: list[np.ndarray], _: dict[str, Any]
    ) -> tuple[float, dict[str, float]] | None:
        """Flower's centralized evaluation, after each round: measure, log, checkpoint."""
        round_ = server_round  # counted on from the checkpoint (ResumedRounds)
        if round_ == self.first_round > 0:
            return None  # the resumed starting point was measured before the kill
        set_weights(self.model, parameters)
        metrics = self.validate()
        self.log_round(round_, metrics)
        if round_ > 0:
            self.save(round_, metrics)
            write_json(
                self.run_dir / ARTIFACT, summary_at(self.run_dir, self.fed, self.described, round_)
            )
        return metrics.get("val/loss", math.nan), metrics

    # ------------------------------------------------------------------ the run folder
    def validate(self) -> dict[str, float]:
        """The global model on the validation split (and the test split with track_test)."""
        splits = ("val", "test") if self.fed.track_test else ("val",)
        self.model.eval()
        batch, metrics = self.config.eval.batch_size, {}
        for name in splits:
            split = self.data.split(name)
            if len(split):
                found = score(self.task, self.model, split, batch).compute()
                metrics.update({f"{name}/{k}": v for k, v in found.items()})
        return metrics

    def log_round(self, round_: int, metrics: dict[str, float]) -> None:
        record: dict[str, Any] = {
            "step": round_,
            "epoch": round_,
            "round": round_,
            "time": round(self.elapsed, 3),
            **metrics,
        }
        if round_ > 0:
            record.update({f"clients/{k}": v for k, v in self.fit_metrics.items()})
        if self.fed.privacy is not None:
            record["privacy/epsilon"] = client_epsilon(self.fed, round_)
        with (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.write_status("running", round_, metrics)
        self.console.print(round_line(record, self.fed.rounds), highlight=False)

    def save(self, round_: int, metrics: dict[str, float]) -> None:
        ckpt = self.config.train.checkpoint
        value = metrics.get(ckpt.monitor)
        if value is not None and is_better(value, self.best[0] if self.best else None, ckpt.mode):
            self.best = (value, checkpoint_name(round_))
        inner = getattr(self, "inner", None)
        strategy = {
            f"{name}.{i}": torch.from_numpy(np.asarray(a).copy())
            for name in STRATEGY_STATE
            for i, a in enumerate(getattr(inner, name, None) or [])
        }
        rng_tensors, rng_values = rng_state()
        state = {
            "round": round_,
            "monitor": ckpt.monitor,
            "monitor_value": value,
            "best": list(self.best) if self.best else None,
            "rng": rng_values,
            "elapsed": self.elapsed,
            "exchanged": exchanged(self.model),
        }
        tensors = {"model": self.model.state_dict(), "server": {**strategy, **rng_tensors}}
        save_checkpoint(self.checkpoints, round_, tensors, state)
        keep = self.checkpoints / self.best[1] if self.best else None
        prune_checkpoints(self.checkpoints, ckpt.keep_last, keep=keep)

    def _resume(self) -> None:
        _, tensors, state = load_latest(self.checkpoints)
        self.model.load_state_dict(tensors["model"])
        self.first_round = int(state["round"])
        self.best = tuple(state["best"]) if state.get("best") else None
        self.elapsed_before = float(state.get("elapsed", 0.0))
        server = tensors["server"]
        for name in STRATEGY_STATE:
            arrays = [server[k].numpy() for k in _ordered(server, name)]
            if arrays:
                self.strategy_state[name] = arrays
        set_rng_state(server, state["rng"])
        self._truncate_metrics(self.first_round)

    def _truncate_metrics(self, round_: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if path.exists():
            kept = [
                ln
                for ln in path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("round", 0) <= round_
            ]
            path.write_text("".join(ln + "\n" for ln in kept))

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def write_run_files(self) -> None:
        """The config, data summary and environment, when this machine's run folder lacks them
        (a server app on a SuperLink's machine)."""
        if (self.run_dir / "config.yaml").is_file():
            return
        (self.run_dir / "config.yaml").write_text(self.config.to_yaml())
        write_json(self.run_dir / "data.json", self.data.meta.to_dict())
        info = environment_info(self.config.seed, torch.get_num_threads())
        write_json(self.run_dir / "environment.json", info)

    def write_status(
        self, status: str, round_: int | None = None, metrics: dict[str, float] | None = None
    ) -> None:
        path = self.run_dir / "status.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        record.update(
            {
                "status": status,
                "rounds": self.fed.rounds,
                "wall_time_s": round(self.elapsed, 3),
                "device": "cpu",
            }
        )
        if round_ is not None:
            record.update({"epochs": round_, "steps": round_, "total_steps": self.fed.rounds})
        if metrics:
            record["last"] = metrics
        write_json(path, record)

    def describe(self) -> dict[str, Any]:
        """What ``federated.json`` records: the partition and the federated settings."""
        fed = self.fed
        parts = client_parts(self.data, self.config)
        labels = self.data.train.y
        histogram = None
        if labels.dim() == 1:
            classes = max(len(self.data.meta.classes), int(labels.max()) + 1)
            histogram = label_histogram(labels.numpy(), parts, classes).tolist()
        return {
            "strategy": fed.strategy,
            "rounds": fed.rounds,
            "clients": fed.clients,
            "clients_per_round": fed.clients_per_round,
            "local_epochs": fed.local_epochs,
            "batch_size": fed.batch_size or self.config.train.batch_size,
            "partition": fed.partition.model_dump(),
            "label_histogram": histogram,
            "sizes": [len(p) for p in parts],
            "classes": list(self.data.meta.classes or []),
            "secure_aggregation": (
                fed.secure_aggregation.model_dump() if fed.secure_aggregation else None
            ),
        }


class ResumedRounds(Strategy):
    """``strategy`` with the rounds numbered on from ``done``: Flower counts from 1 in every
    process, and a resumed server must hand the true round to what depends on it (FedAdam's
    bias correction, the clients' seeds, the checkpoints' names)."""

    def __init__(self, strategy: Strategy, done: int, clients: Any) -> None:
        self.strategy, self.done, self.clients = strategy, done, clients

    def initialize_parameters(self, client_manager: Any) -> Any:
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        self.clients.round = server_round + self.done  # the round's seeded choice of clients
        return self.strategy.configure_fit(server_round + self.done, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

        parameters, metrics = self.strategy.aggregate_fit(server_round + self.done, results,
                                                          failures)  # fmt: skip
        if parameters is not None:  # server optimisers compute in float64: send float32
            arrays = parameters_to_ndarrays(parameters)
            parameters = ndarrays_to_parameters(
                [a.astype(np.float32) if a.dtype == np.float64 else a for a in arrays]
            )
        return parameters, metrics

    def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        return self.strategy.configure_evaluate(
            server_round + self.done, parameters, client_manager
        )

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        return self.strategy.aggregate_evaluate(server_round + self.done, results, failures)

    def evaluate(self, server_round: int, parameters: Any) -> Any:
        return self.strategy.evaluate(server_round + self.done, parameters)


def refuse_batch_norm(model: torch.nn.Module) -> None:
    """Client-level DP clips and noises every exchanged tensor: batch norm's running
    statistics would be noised (a variance can turn negative)."""
    norms = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)
    ]
    if norms:
        raise ConfigError(
            f"federated.privacy noises every exchanged tensor, and layer {norms[0]} is a batch "
            "norm whose running statistics would be noised: use a model without batch norm "
            "(e.g. model.batch_norm: false)"
        )


def round_line(record: dict[str, Any], rounds: int) -> str:
    """One round as the terminal shows it: validation metrics, clients, privacy, time."""
    shown = [f"round {record['round']:>4}/{rounds}"]
    keys = ("val/loss", "val/accuracy", "test/accuracy", "clients/train_loss", "privacy/epsilon")
    for key in keys:
        if key in record:
            shown.append(f"{key} {record[key]:.4f}")
    if "clients/answered" in record:
        shown.append(f"clients {int(record['clients/answered'])}")
    return "  ".join(shown) + f"  [{record['time']:.1f}s]"


def _ordered(tensors: dict[str, torch.Tensor], name: str) -> list[str]:
    keys = [k for k in tensors if k.startswith(f"{name}.")]
    return sorted(keys, key=lambda k: int(k.rsplit(".", 1)[1]))


def server_app(config: ExperimentConfig, run_dir: Path, data: DataSplits) -> Any:
    """A Flower ``ServerApp`` running :class:`FederatedServer` in ``run_dir``."""
    from flwr.server import ServerApp

    app = ServerApp()

    @app.main()
    def _main(grid: Any, context: Any) -> None:
        FederatedServer(config, run_dir, data).main(grid, context)

    return app


__all__ = ["FederatedServer", "server_app"]
