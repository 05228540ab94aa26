"""Adversarial attacks: inputs moved within an epsilon-ball to raise a model's loss.

Each attack is one module registered in ``ATTACKS`` and works in the codec's unit space
(``InputCodec.unit_space``: pixels in [0, 1] for images), so an epsilon means what people read
in papers. Robustness evaluation (``deepline attack``) and adversarial training
(``train.adversarial``) both take their attacks from here.
"""

from __future__ import annotations

from deepline.attacks.base import NORMS, Attack, AttackSpec
from deepline.registry import ATTACKS, import_modules

import_modules(__name__)  # each module registers its attack

__all__ = ["NORMS", "Attack", "AttackSpec", "get_attack"]


def get_attack(name: str) -> Attack:
    """The registered attack ``name`` (an error listing the attacks when unknown)."""
    attack: Attack = ATTACKS.get(name)()
    return attack
