"""Structured pruning (``train.prune.structure: channels``): whole convolution channels and
linear neurons removed by Torch-Pruning, which follows the dependencies between layers
(a residual sum, a batch norm, the layer that reads a pruned one) so the model stays whole.
The model is narrower than its config says; its saved weights carry the widths
(``deepline.models.shapes.fit_to_weights`` builds it back)."""

from __future__ import annotations

import torch
from torch import nn

from deepline.errors import ConfigError


def prune_channels(model: nn.Module, example: torch.Tensor, amount: float) -> nn.Module:
    """Remove ``amount`` of each layer's channels by L1 magnitude (the output layer kept)."""
    import torch_pruning as tp

    output = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    if not output:
        raise ConfigError("train.prune.structure channels needs convolution or linear layers")
    was_training = model.training
    model.eval()
    pruner = tp.pruner.MagnitudePruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=amount, ignored_layers=[output[-1]],
    )  # fmt: skip
    pruner.step()
    model.train(was_training)
    return model
