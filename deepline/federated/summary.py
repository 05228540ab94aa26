"""What ``federated.json`` holds, for the report and the audit card: the partition (the label
histogram of every client), the strategy and its settings, the metrics against rounds, and
the client-level privacy spent, all as of one round's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepline.config import FederatedConfig
from deepline.training.checkpoint import checkpoint_name
from deepline.training.privacy import accountant, epsilon_of

ARTIFACT = "federated.json"
CURVES = ("val/accuracy", "test/accuracy", "clients/local_accuracy", "val/loss", "test/loss")


def client_epsilon(fed: FederatedConfig, rounds: int) -> float:
    """Client-level epsilon at ``federated.privacy.delta`` after ``rounds`` rounds: the
    sampled Gaussian mechanism (rate clients_per_round / clients) composed over the rounds,
    by the RDP accountant DP-SGD uses."""
    assert fed.privacy is not None
    if rounds == 0:
        return 0.0
    a = accountant("rdp")
    a.history = [(fed.privacy.noise_multiplier, fed.clients_per_round / fed.clients, rounds)]
    return epsilon_of(a, fed.privacy.delta)


def curves(run_dir: Path, upto: int) -> dict[str, list[tuple[int, float]]]:
    """(round, value) of each of ``CURVES`` logged, up to round ``upto``."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    out: dict[str, list[tuple[int, float]]] = {}
    for line in lines:
        record = json.loads(line) if line.strip() else {}
        round_ = record.get("round")
        if round_ is None or round_ > upto:
            continue
        for key in CURVES:
            if isinstance(record.get(key), int | float):
                out.setdefault(key, []).append((int(round_), float(record[key])))
    return out


def summary_at(
    run_dir: Path, fed: FederatedConfig, described: dict[str, Any], round_: int
) -> dict[str, Any]:
    """``described`` (partition and settings) with the curves and privacy as of ``round_``."""
    privacy = None
    if fed.privacy is not None:
        privacy = {**fed.privacy.model_dump(), "epsilon": client_epsilon(fed, round_),
                   "sample_rate": fed.clients_per_round / fed.clients}  # fmt: skip
    return {
        **described,
        "checkpoint": checkpoint_name(round_),
        "rounds_done": round_,
        "curves": curves(run_dir, round_),
        "privacy": privacy,
    }
