"""Projected gradient descent (Madry et al. 2018)."""

from __future__ import annotations

from deepline.attacks.base import Attack, AttackSpec
from deepline.registry import ATTACKS


@ATTACKS.register("pgd")
class PGDAttack(Attack):
    """``steps`` steps of ``alpha`` (default 2.5 eps / steps), each projected onto the ball."""

    name = "pgd"

    def default_alpha(self, spec: AttackSpec) -> float:
        return 2.5 * spec.eps / spec.steps

    def steps(self, spec: AttackSpec) -> int:
        return spec.steps
