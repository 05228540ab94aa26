"""FedProx's proximal term (Li et al. 2020): ``(mu / 2) ||w - w_global||^2`` added to a
federated client's loss, so its local training stays near the round's global weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class ProximalTerm(Callback):
    """Adds the term's gradient, ``mu (w - w_global)``, to each parameter's gradient once the
    update's gradients are complete (scaled like them under fp16's gradient scaler)."""

    order = 20  # after the non-finite guard has checked the gradients, before the step

    def __init__(self, mu: float) -> None:
        self.mu = mu
        self.anchor: list[torch.Tensor] = []

    def fit_start(self, trainer: Trainer) -> None:
        self.anchor = [p.detach().clone() for p in trainer.model.parameters()]

    @torch.no_grad()
    def after_backward(self, trainer: Trainer) -> None:
        scaler = trainer.precision.scaler
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        for p, w0 in zip(trainer.model.parameters(), self.anchor, strict=True):
            if p.grad is not None:
                p.grad.add_(p - w0, alpha=self.mu * scale)
