"""deepline: data -> task -> model -> trainer -> run, then evaluate, export, report and serve.

>>> import deepline
>>> run = deepline.train("digits_lenet")      # doctest: +SKIP
>>> run.evaluate(); run.export(); run.report()  # doctest: +SKIP
"""

from deepline import models, tasks  # noqa: F401  (register components)
from deepline.api import Run, fit, resume, train
from deepline.config import ExperimentConfig, load_config
from deepline.errors import DeeplineError

__all__ = ["DeeplineError", "ExperimentConfig", "Run", "fit", "load_config", "resume", "train"]
__version__ = "0.1.0"
