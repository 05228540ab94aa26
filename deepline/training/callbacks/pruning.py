"""Magnitude pruning while training (``train.prune``): the smallest weights of convolutions
and linear layers become zero, and stay zero through every later update, so the run that
follows a pruning event is its fine-tuning.

The masks keep the largest weights by magnitude, over the whole model or per layer (what
``torch.nn.utils.prune``'s L1Unstructured keeps; computed here, as its global variant cannot
read channels-last convolution weights). They are kept exact: a pruned weight's gradient is
zeroed before each update, and at each pruning event its optimizer state (momentum, Adam's
moments) and its moving average are zeroed too, so no update can move it again. A resumed run
reads the masks back from the zeros of its weights. ``steps`` > 1 prunes at the first epochs
on the cubic schedule of Zhu and Gupta 2017: ``amount * (1 - (1 - k / steps)^3)`` after event
``k``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from deepline.config import PruneConfig
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") of every convolution and linear layer whose weights train."""
    return [(m, "weight") for m in model.modules()
            if isinstance(m, PRUNABLE) and m.weight.requires_grad]  # fmt: skip


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def scheduled_amount(config: PruneConfig, event: int) -> float:
    """The share pruned after pruning event ``event`` (1-based)."""
    done = min(event, config.steps) / config.steps
    return config.amount * (1.0 - (1.0 - done) ** 3)


def magnitude_masks(weights: list[torch.Tensor], amount: float, scope: str) -> list[torch.Tensor]:
    """1 where a weight is kept: all but the ``amount`` smallest by magnitude, over all the
    ``weights`` together (``global``) or each on its own (``layer``)."""
    groups = [weights] if scope == "global" else [[w] for w in weights]
    masks: list[torch.Tensor] = []
    for group in groups:
        scores = torch.cat([w.detach().abs().reshape(-1) for w in group])
        keep = scores.numel() - round(amount * scores.numel())
        flat = torch.zeros_like(scores)
        flat[torch.topk(scores, keep, sorted=False).indices] = 1.0
        masks += [m.reshape(w.shape) for m, w in zip(flat.split([w.numel() for w in group]),
                                                     group, strict=True)]  # fmt: skip
    return masks


def sparsity(model: nn.Module) -> float:
    """The share of the prunable weights that are zero."""
    weights = [_weight(m) for m, _ in prunable(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(total, 1)


class Pruning(Callback):
    """Prunes at the first ``steps`` epoch starts; keeps the pruned weights at zero."""

    order = 6  # before the non-finite guard reads the gradients

    def __init__(self, config: PruneConfig) -> None:
        self.config = config
        self.masks: dict[int, torch.Tensor] = {}  # id(weight) -> 1 where kept

    def fit_start(self, trainer: Trainer) -> None:
        self.targets = prunable(trainer.model)
        if trainer.step > 0:  # resumed: the zeros are the masks
            weights = [_weight(m) for m, _ in self.targets]
            self.masks = {id(w): (w != 0).to(w.dtype) for w in weights}

    def epoch_start(self, trainer: Trainer) -> None:
        event = trainer.epoch + 1  # pruning to an amount already reached changes nothing
        if event <= self.config.steps:
            self.prune(trainer, scheduled_amount(self.config, event))
        trainer.logs["train/sparsity"] = sparsity(trainer.model)

    @torch.no_grad()
    def prune(self, trainer: Trainer, amount: float) -> None:
        """Zero the smallest ``amount`` of the weights (already-pruned ones count)."""
        weights = [_weight(module) for module, _ in self.targets]
        for weight, mask in zip(weights, magnitude_masks(weights, amount, self.config.scope),
                                strict=True):  # fmt: skip
            weight.mul_(mask)
            self.masks[id(weight)] = mask
        self._clear_state(trainer)

    @torch.no_grad()
    def _clear_state(self, trainer: Trainer) -> None:
        """Zero what could move a pruned weight again: optimizer state, moving average."""
        by_id = {id(p): p for p in trainer.model.parameters()}
        for key, mask in self.masks.items():
            param = by_id[key]
            for value in trainer.optimizer.state.get(param, {}).values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value.mul_(mask)
        if trainer.ema is not None:
            for own, averaged in zip(trainer.model.parameters(), trainer.ema.module.parameters(),
                                     strict=True):  # fmt: skip
                if id(own) in self.masks:
                    averaged.mul_(self.masks[id(own)])

    @torch.no_grad()
    def after_backward(self, trainer: Trainer) -> None:
        for module, _ in self.targets:
            weight = _weight(module)
            if weight.grad is not None and id(weight) in self.masks:
                weight.grad.mul_(self.masks[id(weight)])
