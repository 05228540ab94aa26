"""The fast gradient sign method (Goodfellow et al. 2015), and with ``random_start`` the fast
adversarial training step of Wong et al. 2020 ("Fast is better than free"): a uniform point of
the ball, one step of ``alpha`` (default 1.25 eps), projected back onto the ball. In L2 the
step follows the normalised gradient (the fast gradient method).
"""

from __future__ import annotations

from deepline.attacks.base import Attack, AttackSpec
from deepline.registry import ATTACKS


@ATTACKS.register("fgsm")
class FGSMAttack(Attack):
    """One step: of ``eps`` from the input, or of ``alpha`` from a random point of the ball."""

    name = "fgsm"

    def default_alpha(self, spec: AttackSpec) -> float:
        return 1.25 * spec.eps if spec.random_start else spec.eps

    def steps(self, spec: AttackSpec) -> int:
        return 1
