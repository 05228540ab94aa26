"""A user's own ``nn.Module``, named by import path in a config (like Hydra's ``_target_``).

Only configs, which users write themselves, can name one; bundles never import code, so a
bundle of a custom model serves through ONNX only.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.errors import DeeplineError
from deepline.registry import MODELS


class CustomModelConfig(ModelConfig):
    name: Literal["custom"] = "custom"
    target: str = Field(..., description="'package.module:ClassName' of an nn.Module")
    arguments: dict[str, Any] = Field(default_factory=dict, description="constructor arguments")


@MODELS.register(
    "custom",
    config=CustomModelConfig,
    example={
        "data": {"name": "diabetes"},
        "model": {"target": "torch.nn:Linear", "arguments": {"in_features": 10, "out_features": 1}},
    },
)
def build_custom(target: str, arguments: dict[str, Any], **_shape_args: Any) -> nn.Module:
    """Import ``target`` and call it with ``arguments`` (the data's shapes are not passed)."""
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise DeeplineError(f"model.target '{target}' cannot be imported: {err}") from None
    return cls(**arguments)
