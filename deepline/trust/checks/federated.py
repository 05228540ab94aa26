"""Federated training as a report and card section: how the data was dealt to the clients,
the strategy, accuracy against rounds, and the client-level privacy and secure aggregation
that protected the clients (``deepline federate`` writes ``federated.json``)."""

from __future__ import annotations

import json
from typing import Any

from deepline import plots
from deepline.evaluate.loading import TrainedRun
from deepline.federated.summary import ARTIFACT, summary_at
from deepline.registry import TRUST_CHECKS
from deepline.report.sections import Section, Table
from deepline.runs import write_json
from deepline.trust.checks.base import Subject, TrustCheck, figure

EXAMPLE = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16},
    "federated": {
        "rounds": 2,
        "clients": 3,
        "clients_per_round": 3,
        "partition": {"scheme": "shards"},
    },
}
DP_SENTENCE = (
    "Client-level differential privacy: ({epsilon:.3g}, {delta:g})-DP with respect to one "
    "client's whole data, after {rounds} rounds of the Gaussian mechanism (each update clipped "
    "to L2 norm {clip:g} by the {side}, noise multiplier {noise:g}), accounted with RDP for "
    "{q:.3g} of the clients sampled a round (the bound assumes Poisson sampling; Flower samples "
    "a fixed number)."
)


@TRUST_CHECKS.register("federated", artifact=ARTIFACT, order=55, example=EXAMPLE)
class FederatedCheck(TrustCheck):
    name = "federated"
    artifact = ARTIFACT

    def unfit(self, run: TrainedRun) -> str | None:
        if run.config.federated is None or self.read(run.run_dir) is None:
            return "not trained federated (deepline federate)"
        return None

    def compute(self, subject: Subject) -> dict[str, Any]:
        run = subject.run
        assert run.config.federated is not None
        described = self.read(subject.folder) or {}
        round_ = int(json.loads((run.checkpoint / "state.json").read_text()).get("round", 0))
        result = summary_at(subject.folder, run.config.federated, described, round_)
        write_json(subject.folder / self.artifact, result)
        return result

    def section(self, result: dict[str, Any]) -> Section:
        part = result["partition"]
        scheme = {
            "iid": "IID",
            "shards": f"{part['shards_per_client']} label shards a client",
            "dirichlet": f"Dirichlet(alpha={part['alpha']}) label skew",
        }[part["scheme"]]
        secagg = result.get("secure_aggregation")
        privacy = result.get("privacy")
        rows = [
            ["strategy", result["strategy"]],
            ["rounds", f"{result['rounds_done']} of {result['rounds']}"],
            ["clients", f"{result['clients']} ({result['clients_per_round']} a round)"],
            [
                "local training",
                f"{result['local_epochs']} epochs, batches of {result['batch_size']}",
            ],
            ["partition", scheme],
            ["secure aggregation", "SecAgg+ (Flower)" if secagg else "off"],
            [
                "client-level privacy",
                f"epsilon {privacy['epsilon']:.4g}, delta {privacy['delta']:g}"
                if privacy
                else "off",
            ],
        ]
        text = [
            "Trained by Flower clients, each on its own partition of the training split; "
            "the server averaged their weights every round and kept this run."
        ]
        if privacy:
            text.append(
                DP_SENTENCE.format(
                    epsilon=privacy["epsilon"],
                    delta=privacy["delta"],
                    rounds=result["rounds_done"],
                    clip=privacy["clipping_norm"],
                    side=privacy["side"],
                    noise=privacy["noise_multiplier"],
                    q=privacy["sample_rate"],
                )
            )
        figures = []
        accuracy = {k: v for k, v in result["curves"].items() if k.endswith("accuracy") and v}
        if accuracy:
            figures.append(
                (
                    "Accuracy against rounds (clients/local_accuracy: the global model "
                    "on each sampled client's own data, before it trains).",
                    figure(lambda p: plots.plot_rounds(accuracy, p), "rounds"),
                )
            )
        if result.get("label_histogram"):
            histogram, classes = result["label_histogram"], result.get("classes") or []
            figures.append(
                (
                    "How the training split was dealt: examples per class on each client.",
                    figure(lambda p: plots.plot_client_labels(histogram, classes, p), "clients"),
                )
            )
        return Section("federated", "Federated training", text, [Table(["", ""], rows)], figures)
