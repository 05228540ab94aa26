"""The built-in callbacks."""

from deepline.training.callbacks.checkpointing import Checkpointing
from deepline.training.callbacks.early_stopping import EarlyStopping
from deepline.training.callbacks.metrics_log import MetricsLog
from deepline.training.callbacks.non_finite import NonFiniteError, NonFiniteGuard
from deepline.training.callbacks.progress import ProgressBar
from deepline.training.callbacks.tensorboard import TensorBoard

__all__ = [
    "Checkpointing",
    "EarlyStopping",
    "MetricsLog",
    "NonFiniteError",
    "NonFiniteGuard",
    "ProgressBar",
    "TensorBoard",
]
