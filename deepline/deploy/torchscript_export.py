"""Export to TorchScript (``torch.jit.trace``) and load it back.

A traced module runs without deepline or the model's source: C++ (libtorch) or Python with
only torch installed. Tracing records the operations one example ran, so batch size and, for
recurrent and attention models, sequence length stay free as long as the model's Python code
branches on neither (deepline's models do not).

>>> path = export_torchscript(model, example, Path("model.torchscript.pt"))  # doctest: +SKIP
>>> load_torchscript(path)(example).shape                                    # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn


@contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notes and the tracer's warnings about Python branches
    (shape checks that become constants; the parity check is what proves the trace right)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Trace ``model`` (in eval mode) on ``example`` (a batch of 2) and save it to ``path``."""
    model = model.eval()
    with quiet_jit(), torch.no_grad():
        traced = torch.jit.trace(model, (example,), check_trace=False, strict=False)
        torch.jit.save(traced, str(path))
    return path


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """A saved TorchScript module on the CPU, in eval mode."""
    with quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu")
    return module.eval()
