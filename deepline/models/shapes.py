"""Give a freshly built model the layer widths of saved weights, before loading them.

A model whose channels were pruned away (``train.prune.structure: channels``) is narrower
than its config describes; its saved weights say how wide each layer is. ``fit_to_weights``
resizes the convolutions, linear layers and norms of a model built from the config to the
shapes of those weights, so ``load_state_dict`` then fills them in exactly.
"""

from __future__ import annotations

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def fit_to_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Resize ``model``'s layers in place to the shapes ``state`` holds; layers whose shapes
    already agree (every layer of an unpruned model) are left alone."""
    for prefix, module in model.named_modules():
        here = {name: t for name, t in module.named_parameters(recurse=False)}
        here.update(dict(module.named_buffers(recurse=False)))
        saved = {name: state.get(f"{prefix}.{name}" if prefix else name) for name in here}
        if all(s is None or s.shape == here[n].shape for n, s in saved.items()):
            continue
        for name, tensor in saved.items():
            if tensor is None:
                continue
            old = here[name]
            new = torch.empty(tensor.shape, dtype=old.dtype, device=old.device)
            if isinstance(old, nn.Parameter):
                setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))
            else:
                module.register_buffer(name, new)
        _update_widths(module)
    return model


def _update_widths(module: nn.Module) -> None:
    """The size attributes a layer reads, from its (resized) weights."""
    weight = getattr(module, "weight", None)
    if isinstance(module, _CONVS) and weight is not None:
        module.out_channels = weight.shape[0]
        module.in_channels = weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear) and weight is not None:
        module.out_features, module.in_features = weight.shape
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        running = module.running_mean if module.running_mean is not None else weight
        if running is not None:
            module.num_features = running.shape[0]
    elif isinstance(module, nn.GroupNorm) and weight is not None:
        module.num_channels = weight.shape[0]
    elif isinstance(module, nn.LayerNorm) and weight is not None:
        module.normalized_shape = tuple(weight.shape)
