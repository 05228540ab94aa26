"""Compression as a report and card section: each stage of the last ``deepline compress``
plan with its score, non-zero parameters, bytes and latency, and the size/score trade-off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepline import plots
from deepline.compress import ARTIFACT, compress_run
from deepline.evaluate.loading import TrainedRun
from deepline.registry import TRUST_CHECKS
from deepline.report.sections import Section, Table
from deepline.trust.checks.base import Subject, TrustCheck, figure
from deepline.trust.explain.base import IMAGE_EXAMPLE

EXAMPLE_PLAN = ("prune:0.5,distill", 1)


def _compress_example(run_dir: Path) -> None:
    compress_run(run_dir, *EXAMPLE_PLAN)


@TRUST_CHECKS.register("compression", artifact=ARTIFACT, order=60, example=IMAGE_EXAMPLE,
                       prepare=_compress_example)  # fmt: skip
class CompressionCheck(TrustCheck):
    name = "compression"
    artifact = ARTIFACT

    def unfit(self, run: TrainedRun) -> str | None:
        if self.read(run.run_dir) is None:
            return "not compressed (deepline compress)"
        return None

    def compute(self, subject: Subject) -> dict[str, Any]:
        """The run's last plan again (its stages fine-tune from the audited weights)."""
        last = self.read(subject.folder) or {}
        plan, epochs = last.get("plan", EXAMPLE_PLAN[0]), last.get("epochs", EXAMPLE_PLAN[1])
        return compress_run(subject.folder, plan, epochs)

    def section(self, result: dict[str, Any]) -> Section:
        stages = result["stages"]
        metric = stages[0]["metric"]
        rows = [[s["stage"], f"{s['score']:.4f}", f"{s['nonzero']:,} of {s['parameters']:,}",
                 f"{s['weights_gzip_bytes'] / 1024:.1f} KiB",
                 f"{s['latency_ms']['1']:.3f} / {s['latency_ms']['64']:.3f}"]
                for s in stages]  # fmt: skip
        points = {s["stage"]: (s["weights_gzip_bytes"] / 1024, s["score"]) for s in stages}
        text = [f"deepline compress --plan {result['plan']}: {result['epochs']} fine-tuning "
                "epochs a stage; each stage is a run in compressed/. Scores on the test split; "
                "latency is ONNX Runtime's median at batch 1 and 64."]  # fmt: skip
        table = Table(["stage", f"test {metric}", "non-zero parameters", "weights (gzip)",
                       "latency ms (1 / 64)"], rows)  # fmt: skip
        drawn = figure(lambda p: plots.plot_trade_off(points, metric, p), "compression")
        return Section("compression", "Compression", text, [table],
                       [("Score against the weights' compressed size.", drawn)])  # fmt: skip
