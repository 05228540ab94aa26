"""The built-in callbacks."""

from deepline.train.callbacks.checkpointing import Checkpointing
from deepline.train.callbacks.early_stopping import EarlyStopping
from deepline.train.callbacks.metrics_log import MetricsLog
from deepline.train.callbacks.progress import ProgressBar
from deepline.train.callbacks.tensorboard import TensorBoard

__all__ = ["Checkpointing", "EarlyStopping", "MetricsLog", "ProgressBar", "TensorBoard"]
