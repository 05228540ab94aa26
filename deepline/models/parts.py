"""Finding the parts of a built model that methods read (its output layer, its features)."""

from __future__ import annotations

from torch import nn


def output_layer(model: nn.Module) -> nn.Module:
    """The module holding the model's last parameters: its output layer."""
    last = [name for name, _ in model.named_parameters()][-1].rpartition(".")[0]
    return model.get_submodule(last)
