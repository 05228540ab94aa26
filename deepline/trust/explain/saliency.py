"""Saliency (Simonyan et al. 2014): the absolute gradient of the target's score with respect
to each input element (``captum.attr.Saliency``). Token ids have no gradient, so for them it is
the gradient times the embedding, summed over the embedding (``LayerGradientXActivation``)."""

from __future__ import annotations

import torch
from captum.attr import LayerGradientXActivation, Saliency
from torch import nn

from deepline.registry import EXPLAINERS
from deepline.tasks import Task
from deepline.trust.explain.base import (
    IMAGE_EXAMPLE,
    Attribution,
    Explainer,
    is_tokens,
    scores,
    token_embedding,
)


@EXPLAINERS.register(
    "saliency",
    example=IMAGE_EXAMPLE,
)
class SaliencyExplainer(Explainer):
    name = "saliency"

    def compute(
        self, model: nn.Module, task: Task, x: torch.Tensor, target: torch.Tensor
    ) -> Attribution:
        if is_tokens(x):
            layer = LayerGradientXActivation(scores(model, task), token_embedding(model))
            return Attribution(layer.attribute(x, target=target).sum(-1).detach())
        return Attribution(
            Saliency(scores(model, task)).attribute(x, target=target, abs=True).detach()
        )
