"""Fairness as a report section: each sensitive column's decisions by group and the
demographic parity and equalized odds gaps with bootstrap intervals (``deepline fairness``
writes ``fairness.json``)."""

from __future__ import annotations

from typing import Any

from deepline.evaluate.loading import TrainedRun
from deepline.registry import TRUST_CHECKS
from deepline.report.sections import Section, Table
from deepline.trust.checks.base import Subject, TrustCheck
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
        mitigation = result.get("mitigation")
        if mitigation:
            before = result["columns"].get(mitigation["column"], {}).get("disparities", {})
            after = mitigation["report"]["disparities"]
            rows = [[name.replace("_", " "), f"{before[name]['value']:.4f}" if name in before
                     else "-", f"{after[name]['value']:.4f}"] for name in after]  # fmt: skip
            rows.append(["accuracy", f"{mitigation['accuracy_before']:.4f}",
                         f"{mitigation['accuracy_after']:.4f}"])  # fmt: skip
            tables.append(Table(
                ["", "before", f"after thresholds ({mitigation['constraint']})"], rows,
                f"by {mitigation['column']}: group thresholds fitted on the validation split "
                "(Fairlearn ThresholdOptimizer), decisions randomised per input",
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
            warnings=warnings,
            passed=False if warnings else None,
        )
