"""Calibration as a report section: ECE and MCE before and after temperature scaling, with
reliability diagrams (``deepline calibrate`` writes ``calibration.json``)."""

from __future__ import annotations

from typing import Any

from deepline import plots
from deepline.evaluate.loading import TrainedRun
from deepline.registry import TRUST_CHECKS
from deepline.report.sections import Section, Table
from deepline.trust.calibration import calibrate_run, write_calibration
from deepline.trust.checks.base import Subject, TrustCheck, figure
from deepline.trust.explain.base import IMAGE_EXAMPLE


@TRUST_CHECKS.register("calibration", artifact="calibration.json", order=10, example=IMAGE_EXAMPLE)
class CalibrationCheck(TrustCheck):
    name = "calibration"
    artifact = "calibration.json"

    def unfit(self, run: TrainedRun) -> str | None:
        if run.task.calibratable:
            return None
        return f"a {run.task.name} model gives no class probabilities to calibrate"

    def compute(self, subject: Subject) -> dict[str, Any]:
        result = calibrate_run(subject.run)
        write_calibration(subject.folder, result)
        return result

    def section(self, result: dict[str, Any]) -> Section:
        rows = [
            [name, f"{r['ece']:.2%}", f"{r['mce']:.2%}", f"{r['nll']:.4f}", f"{r['accuracy']:.4f}"]
            for name, r in (("before", result["before"]), ("after", result["after"]))
        ]
        t = result["temperature"]
        bins = {
            "before": {**result["before"]["bins"], "ece": result["before"]["ece"]},
            f"after (T = {t:.2f})": {**result["after"]["bins"], "ece": result["after"]["ece"]},
        }
        return Section(
            "calibration",
            "Calibration",
            [
                f"Temperature scaling: T = {t:.3f}, fitted on the validation split "
                f"({result['n_fit']} examples); scores on the {result['split']} split "
                f"({result['n']}). ECE and MCE over 15 confidence bins. Marked passed when "
                "scaling does not make ECE worse. `deepline export` after `deepline calibrate` "
                "puts T into the bundle."
            ],
            [Table(["", "ECE", "MCE", "NLL", "accuracy"], rows)],
            [
                (
                    "Reliability before and after scaling.",
                    figure(lambda p: plots.plot_reliability(bins, p), "calibration"),
                )
            ],
            passed=result["after"]["ece"] <= result["before"]["ece"],
        )
