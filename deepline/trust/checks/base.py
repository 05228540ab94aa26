"""The trust-check contract: a JSON result, computed for a subject or read from a run folder,
shown as a report section."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from deepline import plots
from deepline.evaluate.loading import TrainedRun
from deepline.report.sections import Section
from deepline.runs import read_json


@dataclass
class Subject:
    """What an audit examines: a trained run (its data and folder) and the checkpoint's name."""

    run: TrainedRun

    @property
    def folder(self) -> Path:
        return self.run.run_dir


class TrustCheck(ABC):
    """Reads or computes one check and draws its section."""

    name: ClassVar[str]
    artifact: ClassVar[str]  # the JSON file it leaves in a run folder

    def unfit(self, run: TrainedRun) -> str | None:
        """Why this check cannot examine ``run``'s model (None: it can)."""
        return None

    def read(self, run_dir: Path) -> dict[str, Any] | None:
        value = read_json(run_dir / self.artifact)
        return value if isinstance(value, dict) else None

    def result_for(self, subject: Subject) -> dict[str, Any]:
        """The run folder's result when it is for the audited checkpoint, else computed now
        (and left in the run folder, as the command would)."""
        found = self.read(subject.folder)
        if found is not None and found.get("checkpoint") == subject.run.checkpoint.name:
            return found
        return self.compute(subject)

    @abstractmethod
    def compute(self, subject: Subject) -> dict[str, Any]:
        """Run the check with its default settings; write its artifact into the run folder."""

    def for_card(self, result: dict[str, Any]) -> dict[str, Any]:
        """What ``model_card.json`` keeps of a result (default: all of it)."""
        return result

    @abstractmethod
    def section(self, result: dict[str, Any]) -> Section:
        """The result as a report section."""


def figure(draw: Any, name: str) -> str:
    """A figure drawn by ``draw(path)`` into a scratch file, as base64 PNG."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return plots.figure_to_base64_png(draw(Path(tmp) / f"{name}.png"))
