"""Trust checks: each one module registered in ``TRUST_CHECKS``, turning the JSON it leaves in
a run folder (``artifact``) into a section of the run report and of the model card, and
computing itself when an audit finds no such file for the weights audited. Later features
(privacy, fairness) add a module here."""

from __future__ import annotations

from deepline.registry import TRUST_CHECKS, import_modules
from deepline.trust.checks.base import Subject, TrustCheck

import_modules(__name__)  # each module registers its check

__all__ = ["Subject", "TrustCheck", "check_names", "get_check"]


def get_check(name: str) -> TrustCheck:
    check: TrustCheck = TRUST_CHECKS.get(name)()
    return check


def check_names() -> list[str]:
    """Every check, in the order report and card show them."""
    return sorted(TRUST_CHECKS.names(), key=lambda n: TRUST_CHECKS.meta(n)["order"])
