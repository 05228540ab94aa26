"""Tasks: the contract between data, model, training, evaluation, export and serving.

Each task is one module registering a :class:`Task` subclass and its config class in ``TASKS``
(see docs/extending.md); ``build_task`` binds the one a config names to the data's meta.
"""

from __future__ import annotations

from deepline.config import TaskConfig
from deepline.data.meta import DataMeta
from deepline.registry import TASKS, import_modules
from deepline.tasks.base import Evaluator, Figure, OutputSpec, Task

import_modules(__name__)  # each module registers its task

__all__ = ["Evaluator", "Figure", "OutputSpec", "Task", "build_task", "task_class"]


def task_class(name: str) -> type[Task]:
    """The registered task class ``name`` (an error listing the tasks when unknown)."""
    cls: type[Task] = TASKS.get(name)
    return cls


def build_task(config: TaskConfig, meta: DataMeta) -> Task:
    """The registered task named by ``config.name``, bound to the data's meta."""
    return task_class(config.name)(config, meta)
