"""The attack contract: one attempt at fooling a model within an epsilon-ball, run as
projected gradient steps by ``captum.robust.PGD``.

L-infinity steps move along the gradient's sign. For L2, Madry et al. step along the
normalised gradient; Captum steps along its sign and then projects onto the L2 ball, a weaker
attack, so its step is swapped for the normalised one.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from captum.robust import FGSM, PGD

NORMS = ("linf", "l2")
Forward = Callable[[torch.Tensor], torch.Tensor]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackSpec:
    """An attack's budget: the ``eps``-ball in ``norm``, ``steps`` of size ``alpha`` (None: the
    attack's default for ``eps``), from a random point of the ball when ``random_start``.

    Single-step training variants only (FGSM in L-inf): ``noise`` widens the random start to
    that many times ``eps``, and ``project=False`` keeps the step off the ball (N-FGSM)."""

    eps: float
    norm: Literal["linf", "l2"] = "linf"
    alpha: float | None = None
    steps: int = 1
    random_start: bool = False
    noise: float = 1.0
    project: bool = True

    def __post_init__(self) -> None:
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    def scaled(self, factor: float) -> AttackSpec:
        """The same attack with ``eps`` and ``alpha`` times ``factor`` (an epsilon ramp)."""
        alpha = None if self.alpha is None else self.alpha * factor
        return dataclasses.replace(self, eps=self.eps * factor, alpha=alpha)


class Attack(ABC):
    """Perturbs a batch ``x`` (unit space) with labels ``y`` to raise ``loss(forward(x), y)``,
    staying within the spec's ball around ``x`` and within ``low``..``high`` when given.
    An attack says how many projected steps it takes and of what size by default."""

    name: ClassVar[str]

    @abstractmethod
    def default_alpha(self, spec: AttackSpec) -> float:
        """The step size when the spec gives none."""

    @abstractmethod
    def steps(self, spec: AttackSpec) -> int:
        """How many projected steps one attempt takes."""

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
        """One attempt: the perturbed batch, detached."""
        if spec.eps == 0:
            return x.detach()
        pgd = captum_pgd(forward, loss, spec.norm, low, high)
        alpha = spec.alpha if spec.alpha is not None else self.default_alpha(spec)
        norm = "Linf" if spec.norm == "linf" else "L2"
        with warnings.catch_warnings():  # Captum asks for gradients itself, at every step
            warnings.filterwarnings("ignore", message="Input Tensor .* require gradients")
            adversarial = pgd.perturb(
                x.detach(), spec.eps, alpha, self.steps(spec), y,
                random_start=spec.random_start, norm=norm,
            )  # fmt: skip
        return adversarial.detach()


def captum_pgd(
    forward: Forward, loss: Loss, norm: str, low: float | None, high: float | None
) -> PGD:
    """Captum's PGD for ``norm``, taking a step wherever the gradient is not exactly zero."""
    pgd = (L2PGD if norm == "l2" else PGD)(
        forward,
        loss_func=lambda outputs, y: loss(outputs, y).reshape(-1),  # Captum sums a vector
        lower_bound=-math.inf if low is None else low,
        upper_bound=math.inf if high is None else high,
    )
    pgd.fgsm.zero_thresh = 0.0  # Captum skips |gradient| <= 1e-6: a batch-mean loss has many
    return pgd


class L2Step(FGSM):
    """A step of length ``epsilon`` along each example's normalised gradient."""

    def _perturb(
        self,
        inputs: tuple[torch.Tensor, ...],
        grads: tuple[torch.Tensor, ...],
        epsilon: float,
        targeted: bool,
        masks: tuple[Any, ...],
    ) -> tuple[torch.Tensor, ...]:
        sign = -1.0 if targeted else 1.0
        return tuple(
            x + sign * epsilon * g / _norms(g).clamp_min(1e-12) * mask
            for x, g, mask in zip(inputs, grads, masks)
        )


class L2PGD(PGD):
    """Captum's PGD with normalised-gradient steps, and a uniform start in the L2 ball drawn
    per example on the input's device (Captum 0.9 broadcasts its radii wrongly for images)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fgsm = L2Step(*args, **kwargs)

    def _random_point(
        self, center: torch.Tensor, radius: float, norm: str, mask: torch.Tensor | int
    ) -> torch.Tensor:
        direction = torch.randn_like(center)
        direction = direction / _norms(direction).clamp_min(1e-12)
        size = center[0].numel()
        shape = (len(center),) + (1,) * (center.dim() - 1)
        r = torch.rand(shape, device=center.device) ** (1.0 / size) * radius
        return center + r * direction * mask


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Each example's L2 norm, shaped to broadcast over it."""
    return t.flatten(1).norm(dim=1).view(-1, *[1] * (t.dim() - 1))
