"""Fairness as a report section: each sensitive column's decisions by group and the
demographic parity and equalized odds gaps with bootstrap intervals (``deepline fairness``
writes ``fairness.json``)."""

from __future__ import annotations

from typing import Any

from deepline import plots
from deepline.evaluate.loading import TrainedRun
from deepline.registry import TRUST_CHECKS
from deepline.report.sections import Section, Table
from deepline.trust.checks.base import Subject, TrustCheck, figure
from deepline.trust.fairness import fairness_of_run, write_fairness

FOUR_FIFTHS = 0.8  # the selection-rate ratio below which US hiring practice sees adverse impact
EXAMPLE = {
    "data": {"name": "adult", "sensitive": ["sex"]},
    "model": {"name": "tabular_mlp", "hidden": [8]},
}


@TRUST_CHECKS.register("fairness", artifact="fairness.json", order=40, example=EXAMPLE)
class FairnessCheck(TrustCheck):
    name = "fairness"
    artifact = "fairness.json"

    def unfit(self, run: TrainedRun) -> str | None:
        if not run.data.meta.sensitive:
            return "the data declares no sensitive columns (data.sensitive)"
        if len(run.data.meta.classes) != 2:
            return "fairness compares yes/no decisions of a two-class model"
        return None

    def compute(self, subject: Subject) -> dict[str, Any]:
        result = fairness_of_run(subject.run)
        write_fairness(subject.folder, result)
        return result

    def section(self, result: dict[str, Any]) -> Section:
        tables, warnings = [], []
        for column, report in result["columns"].items():
            rows = [
                [group, f"{m['count']:,.0f}", f"{m['accuracy']:.4f}", f"{m['selection_rate']:.4f}",
                 f"{m['true_positive_rate']:.4f}", f"{m['false_positive_rate']:.4f}"]
                for group, m in report["by_group"].items()
            ]  # fmt: skip
            tables.append(Table(["group", "count", "accuracy", "selection rate", "TPR", "FPR"],
                                rows, f"by {column}"))  # fmt: skip
            gaps = [
                [name.replace("_", " "), f"{d['value']:.4f}", f"[{d['low']:.4f}, {d['high']:.4f}]"]
                for name, d in report["disparities"].items()
            ]  # fmt: skip
            tables.append(Table(["disparity", "value", "95% interval"], gaps, f"by {column}"))
            ratio = report["disparities"]["demographic_parity_ratio"]["value"]
            if ratio < FOUR_FIFTHS:
                warnings.append(
                    f"by {column}: the lowest group's selection rate is {ratio:.2f} of the "
                    f"highest's, below the four-fifths rule of thumb ({FOUR_FIFTHS})"
                )
        mitigated = result.get("mitigations", [])
        figures = []
        if mitigated:
            tables.append(mitigation_table(result, mitigated))
            figures.append((
                "Accuracy against the disparity each mitigation constrains, before and after.",
                figure(lambda p: plots.plot_fairness_tradeoff(result, p), "fairness_tradeoff"),
            ))  # fmt: skip
        return Section(
            "fairness",
            "Fairness",
            [
                f"Decisions ('{result['positive']}' is the positive one) on {result['n']} "
                f"{result['split']} examples, by each sensitive column (Fairlearn MetricFrame). "
                "Demographic parity compares selection rates, equalized odds true and false "
                "positive rates; intervals from "
                f"{result['bootstrap']} bootstrap resamples. No pass mark: what gap is "
                "acceptable is a decision about the application."
            ],
            tables,
            figures,
            warnings=warnings,
            passed=False if warnings else None,
        )


def mitigation_table(result: dict[str, Any], mitigated: list[dict[str, Any]]) -> Table:
    """The first column's disparities and accuracy before and after each mitigation."""
    column = mitigated[0]["column"]
    before = result["columns"].get(column, {}).get("disparities", {})
    rows = [
        [name.replace("_", " "), f"{before[name]['value']:.4f}" if name in before else "-",
         *(f"{m['report']['disparities'][name]['value']:.4f}" for m in mitigated)]
        for name in mitigated[0]["report"]["disparities"]
    ]  # fmt: skip
    rows.append(["accuracy", f"{mitigated[0]['accuracy_before']:.4f}",
                 *(f"{m['accuracy_after']:.4f}" for m in mitigated)])  # fmt: skip
    return Table(
        ["", "before", *(f"after {m['method']} ({m['constraint']})" for m in mitigated)],
        rows,
        f"by {column}. thresholds: group thresholds fitted on the validation split (Fairlearn "
        "ThresholdOptimizer), decisions randomised per input; reductions: Fairlearn "
        "ExponentiatedGradient retraining the model with example weights (a randomised "
        "mixture of the models it trained)",
    )
