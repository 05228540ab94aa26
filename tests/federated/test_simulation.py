"""Federated training on Flower's simulation engine: SecAgg+ and client-side DP, export, and a
server killed between rounds that resumes exactly from its last round's checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from deepline.config import load_config
from deepline.federated import federate
from deepline.training.checkpoint import load_checkpoint


def raw_config(**federated: object) -> dict:
    return {
        "name": "simulated", "data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [32]},
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "num_threads": 1},
        "federated": {"rounds": 2, "clients": 3, "clients_per_round": 3, **federated},
    }  # fmt: skip


def logged_rounds(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_fedprox_with_secure_aggregation_and_client_side_privacy_trains_reports_and_exports(
    tmp_path: Path,
) -> None:
    cfg = load_config(raw_config(
        strategy="fedprox", proximal_mu=0.01,
        secure_aggregation={"num_shares": 3, "reconstruction_threshold": 2},
        privacy={"noise_multiplier": 0.01, "clipping_norm": 10.0, "side": "client"},
        partition={"scheme": "dirichlet", "alpha": 1.0},
    ))  # fmt: skip
    run_dir = federate(cfg, run_dir=tmp_path / "run", cpus=1)
    rounds = logged_rounds(run_dir)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[2]["val/accuracy"] > rounds[0]["val/accuracy"] + 0.4
    assert rounds[2]["privacy/epsilon"] > rounds[1]["privacy/epsilon"] > 0
    summary = json.loads((run_dir / "federated.json").read_text())
    assert summary["secure_aggregation"]["num_shares"] == 3 and summary["strategy"] == "fedprox"
    assert summary["privacy"]["epsilon"] == rounds[2]["privacy/epsilon"]
    histogram = summary["label_histogram"]  # every training example on one of 3 clients
    train_size = json.loads((run_dir / "data.json").read_text())["sizes"]["train"]
    assert len(histogram) == 3 and sum(map(sum, histogram)) == train_size
    report = (run_dir / "report.html").read_text()
    assert "Federated training" in report and "SecAgg+" in report
    exported = json.loads((run_dir / "export.json").read_text())  # the bundle, at the end
    assert exported["formats"]["onnx"]["ok"] and (run_dir / "bundle" / "model.onnx").is_file()


def test_a_server_killed_between_rounds_resumes_exactly(tmp_path: Path) -> None:
    # 2 of 4 clients a round: the seeded choice must pick the same ones after the restart
    raw = raw_config(rounds=3, clients=4, clients_per_round=2, strategy="fedadam", server_lr=0.01)
    whole = federate(load_config(raw), run_dir=tmp_path / "whole", cpus=1)

    (tmp_path / "config.yaml").write_text(json.dumps(raw))
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "deepline", "federate", str(tmp_path / "config.yaml"),
               "--run-dir", str(killed), "--cpus", "1"]  # fmt: skip
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 180
    while not (killed / "checkpoints" / "step-00000001").is_dir():
        assert process.poll() is None and time.monotonic() < deadline, "round 1 never saved"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the server, Ray and its clients
    process.wait()
    assert json.loads((killed / "status.json").read_text())["status"] == "running"

    federate(run_dir=killed, cpus=1)  # resumed: FedAdam's moments and the RNGs come back
    rounds = [r["round"] for r in logged_rounds(killed)]
    assert rounds == [0, 1, 2, 3]  # each round once
    assert json.loads((killed / "status.json").read_text())["status"] == "completed"
    a, _ = load_checkpoint(whole / "checkpoints" / "step-00000003")
    b, _ = load_checkpoint(killed / "checkpoints" / "step-00000003")
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, atol=1e-5, rtol=1e-4)
    for name, tensor in a["server"].items():
        if name.startswith(("m_t", "v_t")):
            torch.testing.assert_close(b["server"][name], tensor, atol=1e-6, rtol=1e-4)
