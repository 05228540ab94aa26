"""deepline: data -> task -> model -> trainer -> run, then evaluate, export, report and serve.

>>> import deepline
>>> run = deepline.train("digits_lenet")      # doctest: +SKIP
>>> run.evaluate(); run.export(); run.report()  # doctest: +SKIP

The public API is listed here; names are imported on first use, so ``import deepline`` and the
command line start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "train": "deepline.api",
    "fit": "deepline.api",
    "resume": "deepline.api",
    "Run": "deepline.api",
    "ExperimentConfig": "deepline.config",
    "load_config": "deepline.config",
    "DeeplineError": "deepline.errors",
}
__all__ = ["DeeplineError", "ExperimentConfig", "Run", "fit", "load_config", "resume", "train"]

if TYPE_CHECKING:
    from deepline.api import Run, fit, resume, train
    from deepline.config import ExperimentConfig, load_config
    from deepline.errors import DeeplineError


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'deepline' has no attribute '{name}'")
