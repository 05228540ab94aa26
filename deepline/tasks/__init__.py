"""Tasks: the contract between data, model, training, evaluation and export."""

from deepline.tasks import (  # noqa: F401  (registers the tasks)
    image_classification,
    language_modelling,
    sequence_classification,
)
from deepline.tasks.base import Evaluator, Task

__all__ = ["Evaluator", "Task", "build_task"]


def build_task(config: TaskConfig, meta: DataMeta) -> Task:
    """The registered task named by ``config.name``, bound to the data's meta."""
    from deepline.registry import TASKS

    return TASKS.get(config.name)(config, meta)
