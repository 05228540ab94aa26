"""Explanations as a report section: a grid of explained test predictions, right and wrong,
and whether each method passes its sanity checks (``deepline explain`` writes
``explanations.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepline import plots
from deepline.errors import ConfigError
from deepline.evaluate.loading import TrainedRun
from deepline.registry import TRUST_CHECKS
from deepline.report.sections import Section, Table
from deepline.trust.checks.base import Subject, TrustCheck
from deepline.trust.explain import get_explainer
from deepline.trust.explain.base import IMAGE_EXAMPLE
from deepline.trust.explanations import explain_run

DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam", "attention")


def fitting_methods(run: TrainedRun) -> list[str]:
    """The default methods that can explain ``run``'s model."""
    methods = []
    for name in DEFAULT_METHODS:
        try:
            get_explainer(name).check(run.model, run.task)
        except ConfigError:
            continue
        methods.append(name)
    return methods


@TRUST_CHECKS.register(
    "explanations", artifact="explanations.json", order=30, example=IMAGE_EXAMPLE
)
class ExplanationsCheck(TrustCheck):
    name = "explanations"
    artifact = "explanations.json"

    def unfit(self, run: TrainedRun) -> str | None:
        if fitting_methods(run):
            return None
        return f"no explanation method fits a {run.task.name} {run.config.model.name} model"

    def compute(self, subject: Subject) -> dict[str, Any]:
        return explain_run(subject.run, fitting_methods(subject.run))

    def for_card(self, result: dict[str, Any]) -> dict[str, Any]:
        """The checks and each explained prediction, without attribution arrays or paths."""
        heavy = ("attributions", "overlay")
        inputs = [
            {**r, "methods": {m: {k: v for k, v in e.items() if k not in heavy}
                              for m, e in r.get("methods", {}).items()}}
            for r in result.get("inputs", [])
        ]  # fmt: skip
        return {k: v for k, v in result.items() if k != "grid"} | {"inputs": inputs}

    def section(self, result: dict[str, Any]) -> Section:
        rows, verdicts = [], []
        for name, checks in result.get("sanity", {}).items():
            r, d = checks["randomisation"], checks["deletion"]
            passed = r["passed"] and (d is None or d["passed"])
            verdicts.append(passed)
            rows.append([
                name,
                f"{r['spearman']:.3f}",
                f"{d['ratio']:.3f}" if d else "-",
                "yes" if passed else "no",
            ])  # fmt: skip
        figures = []
        grid = result.get("grid")
        if grid and Path(grid).is_file():
            figures.append(("Explained test predictions (caption: true → predicted, "
                            "confidence); red: what the prediction rests on most.",
                            plots.figure_to_base64_png(Path(grid))))  # fmt: skip
        return Section(
            "explanations",
            "Explanations",
            [
                "Sanity checks: the Spearman rank correlation of each method's maps with those "
                "of the same network with random weights (Adebayo et al. 2018; passes at <= "
                "0.3), and the area under the accuracy curve when the most attributed inputs "
                "are removed first, relative to random removal (passes at <= 0.7)."
            ],
            [
                Table(
                    ["method", "rank corr. with random model", "deletion AUC / random", "passed"],
                    rows,
                )
            ]
            if rows
            else [],
            figures,
            passed=all(verdicts) if verdicts else None,
        )
