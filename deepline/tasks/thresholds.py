"""Decisions by group thresholds: each input's group's rule, randomised by a number derived
from the input itself, so the same input always gets the same decision, offline or served.

A rule maps each group to two threshold operations and the probability of using the first:
``{"Female": [{"p": 0.7, "operator": ">", "threshold": 0.31}, {"p": 0.3, ...}], ...}``
(``deepline.trust.mitigation`` fits them with Fairlearn's ``ThresholdOptimizer``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepline.errors import InputError


def input_seeds(inputs: np.ndarray, salt: str = "deepline-thresholds") -> np.ndarray:
    """One uniform number in [0, 1) per input, a function of the input's encoded values."""
    if not len(inputs):
        return np.empty(0)
    rows = np.ascontiguousarray(np.asarray(inputs, dtype=np.float32).reshape(len(inputs), -1))
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        digest = hashlib.sha256(salt.encode() + row.tobytes()).digest()
        out[i] = int.from_bytes(digest[:8], "little") / 2**64
    return out


def apply_thresholds(
    rule: dict[str, list[dict[str, Any]]],
    scores: np.ndarray,
    groups: Sequence[str],
    draws: np.ndarray,
) -> np.ndarray:
    """Decisions (0/1): each input's group's first operation when its draw is below that
    operation's probability, else the second. A group the rule does not know is an error."""
    out = np.empty(len(scores), dtype=np.int64)
    for i, (score, group, u) in enumerate(zip(scores, groups, draws)):
        operations = rule.get(str(group))
        if operations is None:
            raise InputError(
                f"this model decides by fairness thresholds fitted for the groups "
                f"{', '.join(rule)}; it has none for '{group}', so it does not decide for it"
            )
        op = operations[0] if u < operations[0]["p"] else operations[1]
        above = score > op["threshold"]
        out[i] = int(above if op["operator"] == ">" else not above)
    return out
