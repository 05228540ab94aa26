"""Integrated gradients (Sundararajan et al. 2017) from the baseline of 0 in the unit space (a
black image) or token 0, in 50 steps (``captum.attr.IntegratedGradients``; for token ids
``LayerIntegratedGradients`` on the embedding, summed over it). The convergence delta
(attributions' sum minus the score difference, per example) says how well the integral is
approximated: near 0 is good."""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import nn

from deepline.registry import EXPLAINERS
from deepline.tasks import Task
from deepline.trust.explain.base import (
    IMAGE_EXAMPLE,
    Attribution,
    Explainer,
    baseline,
    is_tokens,
    scores,
    token_embedding,
)

STEPS = 50


@EXPLAINERS.register(
    "integrated_gradients",
    example=IMAGE_EXAMPLE,
)
class IntegratedGradientsExplainer(Explainer):
    name = "integrated_gradients"

    def compute(
        self, model: nn.Module, task: Task, x: torch.Tensor, target: torch.Tensor
    ) -> Attribution:
        if is_tokens(x):
            method = LayerIntegratedGradients(scores(model, task), token_embedding(model))
        else:
            method = IntegratedGradients(scores(model, task))
        values, delta = method.attribute(
            x, baselines=baseline(task, x), target=target, n_steps=STEPS,
            internal_batch_size=max(len(x), 1) * 10, return_convergence_delta=True,
        )  # fmt: skip
        if is_tokens(x):
            values = values.sum(-1)
        return Attribution(values.detach(), delta.detach())
