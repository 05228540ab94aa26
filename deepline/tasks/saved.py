"""A model rebuilt from what a bundle keeps: its task, model config and safetensors weights.

Bundles (``deepline.deploy``) and tasks that read another bundle's model (the classifier
whose features measure generated images) both rebuild models this way: from the model
registry and a config, never by unpickling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from deepline.config import task_config
from deepline.data.meta import DataMeta
from deepline.errors import DeeplineError
from deepline.models.shapes import fit_to_weights
from deepline.registry import MODELS
from deepline.runs import read_json
from deepline.tasks.base import Task
from deepline.tensor_files import load_tensors


def rebuild_model(
    task: Task, model_spec: dict[str, Any], weights: Path | None, where: Path
) -> nn.Module:
    """``task``'s model as ``model_spec`` configures it, with the weights of ``weights``, in
    eval mode (``where`` names the bundle in errors)."""
    name = model_spec.get("name")
    if name == "custom":  # rebuilding it would import code named by a file: never
        raise DeeplineError(f"bundle '{where}' holds a custom model: use the ONNX backend")
    if name not in MODELS:
        raise DeeplineError(f"bundle '{where}': {MODELS.unknown_message(str(name))}")
    if weights is None or not weights.is_file():
        raise DeeplineError(f"bundle '{where}' has no weights file")
    config = MODELS.meta(str(name))["config"].model_validate(model_spec)
    model = task.build_model(config)
    state = load_tensors(weights)
    fit_to_weights(model, state)  # a model whose channels were pruned is narrower
    model.load_state_dict(state)
    return model.eval()


def bundle_model(folder: str | Path) -> tuple[nn.Module, Task]:
    """The model of the bundle in ``folder`` (eval mode) and its task; a DeeplineError saying
    what is missing when the folder is not a bundle."""
    from deepline.tasks import build_task

    folder = Path(folder)
    spec = read_json(folder / "bundle.json", None)
    if not isinstance(spec, dict) or "model" not in spec or "task" not in spec:
        raise DeeplineError(f"'{folder}' is not a bundle (no readable bundle.json)")
    task = build_task(task_config(spec["task"]), DataMeta.from_dict(spec["data"]))
    weights = spec.get("files", {}).get("weights")
    return rebuild_model(task, spec["model"], folder / weights if weights else None, folder), task
