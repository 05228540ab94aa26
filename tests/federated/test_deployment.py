"""Federated training through a real Flower deployment on 127.0.0.1: a SuperLink and
SuperNodes as separate processes, the run sent with `flwr run`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from deepline.config import load_config
from deepline.errors import ConfigError
from deepline.federated import federate
from deepline.federated.run import SuperLinkError
from tests.federated.conftest import Cluster, free_port


def config(**federated: object) -> object:
    return load_config({
        "name": "deployed", "data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [32]},
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "num_threads": 1},
        "federated": {"rounds": 2, "clients": 2, "clients_per_round": 2, **federated},
    })  # fmt: skip


def rounds(run_dir: Path) -> dict[int, dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["round"]: r for r in map(json.loads, lines)}


def test_a_superlink_and_two_supernodes_improve_the_global_model(
    flower: Cluster, tmp_path: Path
) -> None:
    flower.start(clients=2)
    # server-side client-level DP on the way (noise small enough to learn in two rounds)
    privacy = {"noise_multiplier": 0.001, "clipping_norm": 100.0, "side": "server"}
    cfg = config(privacy=privacy)
    run_dir = federate(cfg, run_dir=tmp_path / "run", superlink=flower.address, insecure=True)
    logged = rounds(run_dir)
    assert logged[2]["privacy/epsilon"] > logged[1]["privacy/epsilon"] > 0
    assert sorted(logged) == [0, 1, 2]
    assert logged[2]["val/accuracy"] > logged[0]["val/accuracy"] + 0.5
    assert logged[2]["clients/answered"] == 2
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    assert (run_dir / "checkpoints" / "step-00000002" / "model.safetensors").is_file()
    for node in (0, 1):  # each SuperNode trained in both rounds
        assert flower.log(f"supernode{node}").count("Receiving: train message") == 2


def test_a_client_killed_mid_round_does_not_stop_the_round(flower: Cluster, tmp_path: Path) -> None:
    flower.start(clients=3)
    victim = flower.nodes[2]

    def kill_when_training() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if "Receiving: train message" in flower.log("supernode2"):
                flower.kill(victim)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_training)
    killer.start()
    cfg = config(rounds=1, clients=3, clients_per_round=3, local_epochs=40)
    run_dir = federate(cfg, run_dir=tmp_path / "run", superlink=flower.address, insecure=True)
    killer.join()
    assert victim.poll() is not None  # killed while its client trained
    logged = rounds(run_dir)
    # the SuperLink reports the dead SuperNode's message as failed; the round completes with
    # the other two
    assert logged[1]["clients/answered"] == 2
    assert logged[1]["val/accuracy"] > logged[0]["val/accuracy"] + 0.5


def test_an_unreachable_superlink_is_a_clear_error(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match="over TLS: give root_certificates"):
        federate(config(), run_dir=tmp_path / "run", superlink=address)
    with pytest.raises(SuperLinkError, match=f"no SuperLink answers at {address}"):
        federate(config(), run_dir=tmp_path / "run", superlink=address, insecure=True)
