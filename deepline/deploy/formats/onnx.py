"""``onnx``: ``model.onnx`` for ONNX Runtime, within ``export.atol`` of eager PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepline.deploy.formats.base import Engine, ExportFormat, ExportJob, on_tensors, parity
from deepline.deploy.onnx_export import export_onnx, onnx_session
from deepline.registry import EXPORTERS


@EXPORTERS.register("onnx", order=10)
class OnnxFormat(ExportFormat):
    """The graph traced with dynamic axes where the signature has -1 (batch, sequence length)."""

    name = "onnx"

    def export(self, job: ExportJob) -> dict[str, Any]:
        path = job.out / "model.onnx"
        shape = job.task.signature()["inputs"][0]["shape"]
        dynamic = tuple(axis for axis, size in enumerate(shape) if size == -1)
        max_len = job.task.codec.max_length()
        export_onnx(job.model, job.test_x[:2], path, job.config.opset, dynamic, max_len=max_len)
        return parity(job, path, on_tensors(self.engine(path)))

    def engine(self, path: Path, threads: int | None = None) -> Engine:
        session = onnx_session(path, threads)
        return lambda batch: session.run(None, {"input": batch})[0]
