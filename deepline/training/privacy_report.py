"""What a DP-SGD checkpoint guarantees: epsilon from the accountant history it saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepline.config import PrivacyConfig
from deepline.training.privacy import ACCOUNTANTS, accountant, epsilon_of

SENTENCE = (
    "The model is ({epsilon:.3g}, {delta:g})-differentially private with respect to one "
    "training example: adding or removing any single example of the training split changes "
    "the probability of obtaining these weights by a factor of at most e^{epsilon:.3g}, except "
    "with probability {delta:g}. (The validation split, used to choose the checkpoint, is not "
    "covered.)"
)


def privacy_of_checkpoint(checkpoint: Path, config: PrivacyConfig) -> dict[str, Any]:
    """Epsilon by each accountant at ``checkpoint``, with the settings that produced it."""
    state = json.loads((checkpoint / "state.json").read_text())
    saved = state.get("callbacks", {}).get("DifferentialPrivacy", {})
    epsilons = {}
    for name in ACCOUNTANTS:
        a = accountant(name)
        a.history = [tuple(h) for h in saved.get("history", {}).get(name, [])]
        epsilons[name] = epsilon_of(a, config.delta) if a.history else 0.0
    headline = epsilons[config.accountant]
    return {
        "checkpoint": checkpoint.name,
        "epsilon": headline,
        "epsilons": epsilons,
        "accountant": config.accountant,
        "delta": config.delta,
        "max_grad_norm": config.max_grad_norm,
        "noise_multiplier": saved.get("noise_multiplier"),
        "sample_rate": saved.get("sample_rate"),
        "steps": int(state.get("step", 0)),
        "target_epsilon": config.target_epsilon,
        "statement": SENTENCE.format(epsilon=headline, delta=config.delta),
    }
