"""The fast gradient sign method (Goodfellow et al. 2015), and with ``random_start`` the fast
adversarial training step of Wong et al. 2020 ("Fast is better than free"): a uniform point of
the ball, one step of ``alpha`` (default 1.25 eps), projected back onto the ball. In L2 the
step follows the normalised gradient (the fast gradient method).

In L-inf the random start is theirs exactly: the gradient is taken at the uniform point as
drawn, even where it leaves the valid range (on MNIST's black background, half of it), and only
the result is clipped to it. Clipping the start first, as a projected attack does, zeroes half
the noise on such pixels; fast FGSM training on MNIST then had no robustness at all while the
learning rate was high (PGD-10 validation accuracy 0-1% in epochs 2-5, against 74-85% with
the start as drawn).

N-FGSM (de Jorge et al. 2022) is the same step with a wider start (``noise``: 2 eps) and no
projection (``project=False``): the training input may lie up to ``(noise + alpha / eps)``
eps away, which they found keeps single-step training from collapsing at large eps.
"""

from __future__ import annotations

import torch

from deepline.attacks.base import Attack, AttackSpec, Forward, Loss
from deepline.registry import ATTACKS


@ATTACKS.register("fgsm")
class FGSMAttack(Attack):
    """One step: of ``eps`` from the input, or of ``alpha`` from a random point of the ball."""

    name = "fgsm"

    def default_alpha(self, spec: AttackSpec) -> float:
        return 1.25 * spec.eps if spec.random_start else spec.eps

    def steps(self, spec: AttackSpec) -> int:
        return 1

    def perturb(
        self,
        forward: Forward,
        loss: Loss,
        x: torch.Tensor,
        y: torch.Tensor,
        spec: AttackSpec,
        low: float | None = None,
        high: float | None = None,
    ) -> torch.Tensor:
        if not spec.random_start or spec.norm != "linf" or spec.eps == 0:
            return super().perturb(forward, loss, x, y, spec, low, high)
        alpha = spec.alpha if spec.alpha is not None else self.default_alpha(spec)
        radius = spec.noise * spec.eps
        delta = torch.empty_like(x).uniform_(-radius, radius).requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(loss(forward(x.detach() + delta), y).sum(), delta)[0]
        delta = delta.detach() + alpha * grad.sign()
        if spec.project:
            delta = delta.clamp(-spec.eps, spec.eps)
        low_, high_ = -torch.inf if low is None else low, torch.inf if high is None else high
        return (x.detach() + delta).clamp(low_, high_).detach()
