"""The export format contract: write a file from the eager model, check it, and run it.

A format is one module with a registered :class:`ExportFormat` subclass (see
docs/extending.md). ``export`` writes its file into the bundle being made and checks it against
eager PyTorch on the bundle's test inputs, reporting ``ok``; ``engine`` runs the file in a
Predictor (the format's name is a Predictor backend).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from deepline.config import ExportConfig
from deepline.tasks import Task

Runner = Callable[[torch.Tensor], torch.Tensor]  # a batch of inputs -> outputs
Engine = Callable[[np.ndarray], np.ndarray]  # the same on numpy, as a Predictor runs it


@dataclass
class ExportJob:
    """What every format needs: the eager model, its task, the inputs to check it on
    (``test_x``/``test_y``, ``calibration``), the folder to write into and the settings."""

    model: nn.Module
    task: Task
    examples: dict[str, torch.Tensor]
    out: Path
    config: ExportConfig

    @property
    def test_x(self) -> torch.Tensor:
        return self.examples["test_x"]


class ExportFormat(ABC):
    """One export format; subclasses set ``name`` (their registry name)."""

    name: ClassVar[str]

    def needs(self, job: ExportJob) -> tuple[str, ...]:
        """Formats that must be exported first (the file this one is made from)."""
        return ()

    @abstractmethod
    def export(self, job: ExportJob) -> dict[str, Any]:
        """Write the file into ``job.out`` and check it: a report entry with its ``path``
        (relative to the bundle), ``ok``, ``bytes`` and the numbers of the check."""

    @abstractmethod
    def engine(self, path: Path, threads: int | None = None) -> Engine:
        """A function running the exported file on a model-ready batch."""

    def failure(self, info: dict[str, Any]) -> str:
        """Why a check failed, with its numbers (``info`` is the report entry)."""
        return (
            f"{self.name} output differs from PyTorch by {info['max_abs_diff']:.3g} "
            f"(> export.atol {info['atol']:g} + export.rtol {info.get('rtol', 0):g} x |output|) "
            f"on {info['examples']} test inputs"
        )


def parity(job: ExportJob, path: Path, run: Runner) -> dict[str, Any]:
    """|format - eager PyTorch| on the test inputs within ``atol + rtol * |PyTorch|``."""
    atol, rtol = job.config.atol, job.config.rtol
    diff, excess = differences(job.model, run, job.test_x, rtol)
    return {
        "path": path.name,
        "max_abs_diff": diff,
        "atol": atol,
        "rtol": rtol,
        "ok": excess <= atol,
        "examples": len(job.test_x),
        "bytes": path.stat().st_size,
    }


@torch.no_grad()
def differences(
    model: nn.Module, run: Runner, inputs: torch.Tensor, rtol: float = 0.0
) -> tuple[float, float]:
    """(largest |run(x) - model(x)|, largest |run(x) - model(x)| - rtol * |model(x)|), on one
    example alone and in batches of up to 64 (a format traced on a batch of 2 must take any
    other)."""
    worst = excess = 0.0
    for x in [inputs[:1], *inputs.split(64)]:
        want = model(x)
        gap = (run(x) - want).abs()
        worst = max(worst, float(gap.max()))
        excess = max(excess, float((gap - rtol * want.abs()).max()))
    return worst, excess


@torch.no_grad()
def batched_outputs(run: Runner, inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([run(x) for x in inputs.split(64)])


def on_tensors(engine: Engine) -> Runner:
    """An engine (numpy in and out) as a runner of tensors."""
    return lambda x: torch.from_numpy(np.asarray(engine(x.numpy())))


def torch_engine(model: nn.Module, device: torch.device | None = None) -> Engine:
    """A module (eager or TorchScript) run in inference mode on numpy batches, on ``device``
    (the CPU by default)."""

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch))
            return model(x if device is None else x.to(device)).cpu().numpy()

    return run


def metric_check(job: ExportJob, run: Runner, label: str) -> dict[str, Any]:
    """A lossy format judged by the task's primary metric (the one that picks the best
    checkpoint) on the test inputs: its score under ``label`` next to eager fp32's, and ``ok``
    when it is worse by at most ``export.int8_max_drop``."""
    name, mode = primary_metric(job.task)
    eager = batched_outputs(job.model, job.test_x)
    exported = batched_outputs(run, job.test_x)
    fp32_score, exported_score = score(job, name, eager), score(job, name, exported)
    change = exported_score - fp32_score
    drop = -change if mode == "max" else change  # how much worse, in the metric's units
    return {
        "metric": name,
        "higher_is_better": mode == "max",
        "fp32": fp32_score,
        label: exported_score,
        "change": change,
        "max_drop": job.config.int8_max_drop,
        "ok": drop <= job.config.int8_max_drop,
        "max_abs_diff": float((exported - eager).abs().max()),  # for information: not a check
        "examples": len(job.test_x),
    }


def metric_failure(label: str, info: dict[str, Any]) -> str:
    """Why a :func:`metric_check` failed, with its numbers."""
    worse = "lower" if info["higher_is_better"] else "higher"
    return (
        f"{label} {info['metric']} is {info[label]:.4g} against {info['fp32']:.4g} in fp32 "
        f"({worse} by {abs(info['change']):.4g} > export.int8_max_drop "
        f"{info['max_drop']:g}) on {info['examples']} test inputs"
    )


def primary_metric(task: Task) -> tuple[str, str]:
    """The metric lossy formats are judged by and 'max' or 'min': the one that picks the best
    checkpoint."""
    name, mode = task.monitor_default()
    return name.removeprefix("val/"), mode


def score(job: ExportJob, name: str, outputs: torch.Tensor) -> float:
    """The task's metric ``name`` of ``outputs`` on the test examples."""
    evaluator = job.task.evaluator()
    evaluator.update(job.test_x, outputs, job.examples["test_y"])
    return float(evaluator.compute()[name])
