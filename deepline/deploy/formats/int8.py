"""``int8``: a quantized model, judged by the task's own metric on the test inputs.

Conv nets: ``model.int8.onnx``, ONNX Runtime static quantization of ``model.onnx`` (exported
and checked first), calibrated on training inputs. Other models: ``model.int8.pt``, dynamic
quantization of Linear/LSTM/GRU layers, traced to TorchScript. The task's primary metric (the
one that picks the best checkpoint: accuracy; the loss of a language model) may get worse by
at most ``export.int8_max_drop``. See ``deepline.deploy.quantize``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepline.deploy.formats.base import (
    Engine,
    ExportFormat,
    ExportJob,
    metric_check,
    metric_failure,
    on_tensors,
    torch_engine,
)
from deepline.deploy.formats.onnx import OnnxFormat
from deepline.deploy.quantize import (
    DYNAMIC_METHOD,
    STATIC_METHOD,
    int8_runtime,
    quantize_dynamic_torchscript,
    quantize_onnx_static,
)
from deepline.deploy.torchscript_export import export_torchscript, load_torchscript
from deepline.registry import EXPORTERS


@EXPORTERS.register("int8", order=30)
class Int8Format(ExportFormat):
    name = "int8"

    def needs(self, job: ExportJob) -> tuple[str, ...]:
        return ("onnx",) if int8_runtime(job.model) == "onnxruntime" else ()

    def export(self, job: ExportJob) -> dict[str, Any]:
        runtime = int8_runtime(job.model)
        if runtime == "onnxruntime":
            fp32 = job.out / "model.onnx"  # written (and checked) first: see ``needs``
            path = quantize_onnx_static(
                fp32, job.examples["calibration"], job.out / "model.int8.onnx"
            )
            method, fp32_bytes = STATIC_METHOD, fp32.stat().st_size
        else:
            path = quantize_dynamic_torchscript(
                job.model, job.test_x[:2], job.out / "model.int8.pt"
            )
            method, fp32_bytes = DYNAMIC_METHOD, _fp32_torchscript_bytes(job)
        size = path.stat().st_size
        return {
            "path": path.name,
            "runtime": runtime,
            "method": method,
            **metric_check(job, on_tensors(self.engine(path)), "int8"),
            "bytes": size,
            "fp32_bytes": fp32_bytes,
            "size_ratio": size / fp32_bytes,
        }

    def engine(self, path: Path, threads: int | None = None) -> Engine:
        if path.suffix == ".onnx":
            return OnnxFormat().engine(path, threads)
        return torch_engine(load_torchscript(path))

    def failure(self, info: dict[str, Any]) -> str:
        return metric_failure("int8", info)


def _fp32_torchscript_bytes(job: ExportJob) -> int:
    """Size of the fp32 model as TorchScript: the file int8 TorchScript replaces."""
    existing = job.out / "model.torchscript.pt"
    if existing.is_file():
        return existing.stat().st_size
    scratch = job.out / ".fp32.torchscript.pt"
    try:
        return export_torchscript(job.model, job.test_x[:2], scratch).stat().st_size
    finally:
        scratch.unlink(missing_ok=True)
