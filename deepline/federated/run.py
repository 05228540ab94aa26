"""Run a federated experiment: simulated on this machine by Flower's simulation engine, or
deployed through a running SuperLink with ``flwr run``."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from deepline.config import ExperimentConfig
from deepline.data import DataSplits
from deepline.errors import ConfigError, DeeplineError
from deepline.federated.client import flower_client, simulated_site
from deepline.federated.server import FederatedServer, server_app
from deepline.federated.summary import ARTIFACT, summary_at
from deepline.runs import environment_info, write_json
from deepline.tasks import task_class
from deepline.training.experiment import prepare_run_dir

APP_FOLDER = "flower-app"
console = Console(stderr=True)  # the Flower App that `flwr run` sends to the SuperLink


class SuperLinkError(DeeplineError):
    """The SuperLink could not be reached, or the run it was sent failed."""


def federate(
    config: ExperimentConfig | None = None,
    runs_root: str | Path = "runs",
    run_dir: str | Path | None = None,
    data: DataSplits | None = None,
    superlink: str | None = None,
    cpus: int | None = None,
    root_certificates: str | Path | None = None,
    insecure: bool = False,
) -> Path:
    """Train ``config`` federated, export the global model's bundle and write the report;
    return the run folder (continued from its last round when it holds one already).

    Simulated unless ``superlink`` (HOST:PORT) is given: then over TLS checked against
    ``root_certificates`` (a PEM file), or unencrypted only when ``insecure`` says so.
    ``cpus`` bounds the simulation's parallel clients (default: every core).
    """
    config, folder, resuming = prepare_run_dir(config, runs_root, run_dir)
    if config.federated is None:
        raise ConfigError("the config has no federated section: train it with `deepline train`")
    if superlink is not None:
        if root_certificates is not None and insecure:
            raise ConfigError("give root_certificates (TLS) or insecure, not both")
        if root_certificates is None and not insecure:
            raise ConfigError(
                "a SuperLink is reached over TLS: give root_certificates (the CA's PEM file), "
                "or insecure=True for an unencrypted connection (a test on one machine)"
            )
        check_reachable(superlink)
    given = data  # handed to simulated clients; else each reads the dataset itself, once
    data = data if data is not None else task_class(config.task.name).load_data(config.data)
    if not resuming:
        write_json(
            folder / "environment.json", environment_info(config.seed, torch.get_num_threads())
        )
        write_json(folder / "data.json", data.meta.to_dict())
    probe = FederatedServer(config, folder, data)  # checks the partition before any round
    write_json(
        folder / ARTIFACT, summary_at(folder, config.federated, probe.described, probe.first_round)
    )
    if superlink is None:
        simulate(config, folder, data, cpus, given)
    else:
        deploy(config, folder, superlink, root_certificates)
        if not (folder / "status.json").is_file():
            console.print(f"the run folder is on the SuperLink's machine, at {folder}")
            return folder
    _check_completed(folder)
    from deepline.deploy.export import export_run
    from deepline.report import write_report

    export_run(folder)  # the global model's bundle, as `deepline export` writes it
    write_report(folder)
    return folder


def simulate(
    config: ExperimentConfig,
    folder: Path,
    data: DataSplits,
    cpus: int | None,
    client_data: DataSplits | None = None,
) -> None:
    """``federated.clients`` virtual SuperNodes on Flower's simulation engine (Ray). The
    clients read the catalog's dataset in their own processes unless ``client_data`` is
    given (it is then sent to them with every message: for small data only)."""
    from flwr.client import ClientApp
    from flwr.simulation import run_simulation

    from deepline.federated.apps import client_mods

    fed = config.federated
    assert fed is not None

    def client_fn(context: Any) -> Any:
        client = int(context.node_config["partition-id"])
        return flower_client(client, lambda: simulated_site(config, client, client_data))

    cpus = cpus or os.cpu_count() or 1
    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": cpus,
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,
        },
    }
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    run_simulation(
        server_app=server_app(config, folder, data),
        client_app=ClientApp(client_fn=client_fn, mods=client_mods(config)),
        num_supernodes=fed.clients,
        backend_config=backend,  # type: ignore[arg-type]
    )


def deploy(
    config: ExperimentConfig, folder: Path, superlink: str, root_certificates: str | Path | None
) -> None:
    """Send the run to the SuperLink at ``superlink`` with ``flwr run`` and follow its log
    (TLS with ``root_certificates``, else unencrypted)."""
    app = write_flower_app(config, folder)
    flwr = shutil.which("flwr", path=str(Path(sys.executable).parent)) or shutil.which("flwr")
    if flwr is None:
        raise SuperLinkError("the `flwr` command is not installed (pip install flwr)")
    with tempfile.TemporaryDirectory() as home:
        import tomli_w

        connection: dict[str, Any] = {"address": superlink}
        if root_certificates is None:
            connection["insecure"] = True
        else:
            connection["root-certificates"] = str(Path(root_certificates).resolve())
        flower_config = {"superlink": {"default": "deepline", "deepline": connection}}
        (Path(home) / "config.toml").write_text(tomli_w.dumps(flower_config))
        env = {**os.environ, "FLWR_HOME": home}
        done = subprocess.run([flwr, "run", str(app), "deepline", "--stream"], env=env)
    if done.returncode:
        raise SuperLinkError(f"`flwr run` failed (exit code {done.returncode}): see its log above")


def write_flower_app(config: ExperimentConfig, folder: Path) -> Path:
    """The Flower App folder: a pyproject.toml naming deepline's components, with the config
    and the run folder in its run config."""
    import tomli_w

    app = folder / APP_FOLDER
    app.mkdir(exist_ok=True)
    project = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {
            "name": "deepline-federated",
            "version": "1.0.0",
            "description": f"deepline experiment {config.name}",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "deepline",
                    "components": {
                        "serverapp": "deepline.federated.apps:server_app",
                        "clientapp": "deepline.federated.apps:client_app",
                    },
                    "config": {"config": config.to_yaml(), "run-dir": str(folder.resolve())},
                }
            }
        },
    }
    (app / "pyproject.toml").write_text(tomli_w.dumps(project))
    return app


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """A SuperLinkError unless something listens at HOST:PORT."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--superlink {address!r}: give HOST:PORT, e.g. 127.0.0.1:8000")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise SuperLinkError(
            f"no SuperLink answers at {address} ({err.strerror or err}): start one with "
            "`flower-superlink --insecure`, or check the address"
        ) from None


def _check_completed(folder: Path) -> None:
    from deepline.runs import read_json

    status = (read_json(folder / "status.json", {}) or {}).get("status")
    if status != "completed":
        raise DeeplineError(
            f"the federated run in {folder} did not complete (status {status}): the server "
            "app failed; its log above says why. Resume with `deepline federate --resume`"
        )
