"""``torchscript``: ``model.torchscript.pt``, traced, within ``export.atol`` of eager PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepline.deploy.formats.base import Engine, ExportFormat, ExportJob, parity, torch_engine
from deepline.deploy.torchscript_export import export_torchscript, load_torchscript
from deepline.registry import EXPORTERS


@EXPORTERS.register("torchscript", order=20)
class TorchScriptFormat(ExportFormat):
    """``torch.jit.trace`` on two test inputs; loaded without unpickling Python objects."""

    name = "torchscript"

    def export(self, job: ExportJob) -> dict[str, Any]:
        path = export_torchscript(job.model, job.test_x[:2], job.out / "model.torchscript.pt")
        return parity(job, path, load_torchscript(path))

    def engine(self, path: Path, threads: int | None = None) -> Engine:
        return torch_engine(load_torchscript(path))
