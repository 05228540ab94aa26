"""deepline: data -> task -> model -> trainer -> run, then evaluate, export, report and serve."""

from deepline import models  # noqa: F401  (registers components)
from deepline.config import ExperimentConfig, load_config
from deepline.errors import DeeplineError

__all__ = ["DeeplineError", "ExperimentConfig", "load_config"]
__version__ = "0.1.0"
