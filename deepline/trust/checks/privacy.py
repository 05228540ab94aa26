"""Differential privacy as a report and card section: the (epsilon, delta) guarantee of the
audited checkpoint, recomputed from the accountant history its checkpoint saved."""

from __future__ import annotations

from typing import Any

from deepline.evaluate.loading import TrainedRun
from deepline.registry import TRUST_CHECKS
from deepline.report.sections import Section, Table
from deepline.runs import write_json
from deepline.training.privacy_report import privacy_of_checkpoint
from deepline.trust.checks.base import Subject, TrustCheck

EXAMPLE = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [8]},
    "train": {"optimizer": "sgd", "lr": 0.05, "privacy": {"noise_multiplier": 1.0}},
}


@TRUST_CHECKS.register("privacy", artifact="privacy.json", order=50, example=EXAMPLE)
class PrivacyCheck(TrustCheck):
    name = "privacy"
    artifact = "privacy.json"

    def unfit(self, run: TrainedRun) -> str | None:
        if run.config.train.privacy is None:
            return "trained without differential privacy (train.privacy)"
        return None

    def compute(self, subject: Subject) -> dict[str, Any]:
        config = subject.run.config.train.privacy
        assert config is not None
        result = privacy_of_checkpoint(subject.run.checkpoint, config)
        write_json(subject.folder / self.artifact, result)
        return result

    def section(self, result: dict[str, Any]) -> Section:
        eps = result["epsilons"]
        rows = [
            ["epsilon (RDP)", f"{eps['rdp']:.4f}"],
            ["epsilon (PRV)", f"{eps['prv']:.4f}"],
            ["delta", f"{result['delta']:g}"],
            ["per-example clipping norm", f"{result['max_grad_norm']:g}"],
            ["noise multiplier", f"{result['noise_multiplier']:.4f}"],
            ["sampling rate (Poisson)", f"{result['sample_rate']:.5f}"],
            ["steps", f"{result['steps']:,}"],
        ]
        text = [result["statement"], f"Headline accountant: {result['accountant'].upper()}; "
                "DP-SGD through Opacus."]  # fmt: skip
        return Section("privacy", "Differential privacy", text, [Table(["", ""], rows)])
