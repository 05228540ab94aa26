"""Export to ONNX and check it against eager PyTorch with ONNX Runtime."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from deepline.models.rnn import dynamic_length_export

if TYPE_CHECKING:
    import onnxruntime as ort


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int = 18,
    dynamic: tuple[int, ...] = (0,),
    max_len: int | None = None,
) -> Path:
    """Write ``model`` as ONNX, input 'input', output 'logits'.

    ``dynamic`` lists the input axes left free: 0 is the batch; 1, for sequences, the length
    (up to ``max_len``). The others are fixed to ``example``'s sizes.
    """
    model = model.eval()
    names = {0: torch.export.Dim("batch", min=1, max=65536)}
    if 1 in dynamic:
        names[1] = torch.export.Dim("length", min=2, max=max_len or 65536)
    # the exporter logs a warning per missing torchvision op; none of ours needs them
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    # dynamic_length_export works around a torch 2.13 exporter bug that fixes the length of
    # RNN inputs after the first export in a process; other models are unaffected
    with warnings.catch_warnings(), torch.no_grad(), dynamic_length_export():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({axis: names[axis] for axis in dynamic},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
        assert program is not None
        program.save(str(path))
    return path


def onnx_session(path: Path | bytes, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session (CPU) of a model file, or of a serialised model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # idle intra-op threads sleep instead of spinning: a server's event loop shares the cores
    # (spinning threads cost its requests milliseconds at the 99th percentile)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def max_abs_difference(model: nn.Module, path: Path, inputs: torch.Tensor) -> float:
    """Largest |ONNX Runtime - eager PyTorch| over ``inputs``, in batches of up to 64."""
    session = onnx_session(path)
    worst = 0.0
    for i in range(0, len(inputs), 64):
        x = inputs[i : i + 64]
        expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst
