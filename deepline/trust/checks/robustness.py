"""Robustness as a report section: the metric against epsilon per attack, and any signs of
gradient masking (``deepline attack`` writes ``robustness.json``)."""

from __future__ import annotations

from typing import Any

from deepline import plots
from deepline.evaluate.loading import TrainedRun
from deepline.registry import TRUST_CHECKS
from deepline.report.sections import Section, Table
from deepline.trust.checks.base import Subject, TrustCheck, figure
from deepline.trust.explain.base import IMAGE_EXAMPLE
from deepline.trust.robustness import AttackPlan, robustness_curves, write_robustness

DEFAULT_PLAN = AttackPlan(("fgsm", "pgd"), (0.05, 0.1, 0.2, 0.3), steps=10)


@TRUST_CHECKS.register("robustness", artifact="robustness.json", order=20, example=IMAGE_EXAMPLE)
class RobustnessCheck(TrustCheck):
    name = "robustness"
    artifact = "robustness.json"

    def unfit(self, run: TrainedRun) -> str | None:
        if run.task.codec.unit_space() is not None:
            return None
        return f"the {run.task.codec.name} inputs are discrete: gradient attacks cannot move them"

    def compute(self, subject: Subject) -> dict[str, Any]:
        result = robustness_curves(subject.run, DEFAULT_PLAN, "test", limit=1000)
        write_robustness(subject.folder, result)
        return result

    def section(self, result: dict[str, Any]) -> Section:
        metric, curves = result["metric"], result["curves"]
        attacks = list(curves)
        first = curves[attacks[0]]
        rows = [
            [f"{p['eps']:g}", *(f"{curves[a][i]['metrics'][metric]:.4f}" for a in attacks)]
            for i, p in enumerate(first)
        ]
        budget = ""
        if "pgd" in curves:
            step = f" of {result['alpha']:g}" if result.get("alpha") else ""
            budget = f" PGD: {result['steps']} steps{step}, {result['restarts']} restart(s)."
        return Section(
            "robustness",
            "Robustness",
            [
                f"{metric} under attack on {result['n']} {result['split']} examples, "
                f"{result['norm']} ball of radius eps in the inputs' unit space (pixels in "
                f"[0, 1]).{budget} Attacks: Captum. There is no pass mark for robustness: "
                "the section needs attention only when the curve looks like gradient masking "
                "(robustness overstated)."
            ],
            [Table(["eps", *(a.upper() for a in attacks)], rows)],
            [
                (
                    f"{metric} against epsilon.",
                    figure(lambda p: plots.plot_robustness(result, p), "robustness"),
                )
            ],
            warnings=list(result.get("warnings", [])),
            passed=False if result.get("warnings") else None,
        )
