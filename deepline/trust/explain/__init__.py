"""Explanations: which parts of an input a prediction rests on. Each method is one module
registered in ``EXPLAINERS`` (saliency, integrated gradients, Grad-CAM, attention rollout),
computed with Captum where Captum has it."""

from __future__ import annotations

from deepline.registry import EXPLAINERS, import_modules
from deepline.trust.explain.base import Attribution, Explainer

import_modules(__name__)  # each module registers its method

__all__ = ["Attribution", "Explainer", "get_explainer"]


def get_explainer(name: str) -> Explainer:
    """The registered method ``name`` (an error listing the methods when unknown)."""
    explainer: Explainer = EXPLAINERS.get(name)()
    return explainer
