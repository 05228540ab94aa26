"""int8 models: ONNX Runtime static quantization for conv nets, PyTorch dynamic for the rest.

Convolutions only get faster and smaller when their activations are int8 too, which needs
ranges measured on real inputs (static quantization, calibrated on training inputs); ONNX
Runtime runs such QDQ graphs with int8 kernels. MLPs, recurrent nets and transformers spend
their time in matrix products whose weights dominate the size: dynamic quantization (int8
weights, activations quantized per batch at run time) needs no calibration and keeps accuracy,
and a traced TorchScript module carries it.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from deepline.deploy.torchscript_export import export_torchscript

Int8Runtime = Literal["onnxruntime", "torchscript"]

CONV_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
DYNAMIC_LAYERS = {nn.Linear, nn.LSTM, nn.GRU}
CALIBRATION_BATCH = 32

STATIC_METHOD = (
    "static QDQ (ONNX Runtime): per-channel int8 weights (7-bit range, safe on CPUs "
    "without VNNI), uint8 activations with min-max ranges from training inputs"
)
DYNAMIC_METHOD = (
    "dynamic (torch.ao): int8 weights of Linear/LSTM/GRU layers, activations quantized "
    "per batch at run time; TorchScript"
)


def int8_runtime(model: nn.Module) -> Int8Runtime:
    """``"onnxruntime"`` (static) for a model with any convolution, else ``"torchscript"``."""
    has_conv = any(isinstance(m, CONV_LAYERS) for m in model.modules())
    return "onnxruntime" if has_conv else "torchscript"


def quantize_onnx_static(fp32: Path, calibration: torch.Tensor, path: Path) -> Path:
    """Quantize the ONNX model ``fp32`` to ``path``, calibrated on ``calibration`` inputs.

    QDQ format, per-channel int8 weights, uint8 activations: ONNX Runtime's advice for x86 CPUs;
    ``reduce_range`` (7-bit weights) avoids the saturation of CPUs without VNNI.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # normalisation layers keep float weights: their 1-D scales have no per-channel axis
    norms = {"BatchNormalization", "InstanceNormalization", "LayerNormalization"}
    ops = sorted(set(QDQRegistry) - norms)
    with tempfile.TemporaryDirectory() as tmp, _quiet_onnxruntime():
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference and graph clean-up first, as ONNX Runtime advises: fewer, better
        # placed QDQ pairs (a smaller file)
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(path),
            _CalibrationReader(calibration.numpy()),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=ops,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return path


def quantize_dynamic_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Dynamic int8 quantization of ``model``'s Linear/LSTM/GRU layers, traced to ``path``."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency;
        # its quantized-tensor constructors warn the same way
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_(tensor|channel).*")
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(model.eval(), DYNAMIC_LAYERS, dtype=torch.qint8)
        return export_torchscript(quantized, example, path)


class _CalibrationReader:
    """Feeds calibration inputs to ONNX Runtime's calibrator in batches (its reader protocol)."""

    def __init__(self, inputs: np.ndarray) -> None:
        starts = range(0, len(inputs), CALIBRATION_BATCH)
        self.batches = iter([{"input": inputs[i : i + CALIBRATION_BATCH]} for i in starts])

    def get_next(self) -> dict[str, Any] | None:
        return next(self.batches, None)


@contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice on the root logger; keep it to errors."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
