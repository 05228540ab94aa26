"""Grad-CAM (Selvaraju et al. 2017): the last convolution's activations weighted by the mean
gradient of the target's score, ReLU'd and upsampled to the input (``captum.attr.LayerGradCam``).
For convolutional models only."""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from deepline.errors import ConfigError
from deepline.registry import EXPLAINERS
from deepline.tasks import Task
from deepline.trust.explain.base import IMAGE_EXAMPLE, Attribution, Explainer, scores


def last_convolution(model: nn.Module) -> nn.Module | None:
    """The layer Grad-CAM weighs: the one a model names as ``explained_layer`` (a detector's
    heatmap head, say), else its last convolution."""
    named = getattr(model, "explained_layer", None)
    if isinstance(named, nn.Module):
        return named
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


@EXPLAINERS.register(
    "gradcam",
    example=IMAGE_EXAMPLE,
)
class GradCamExplainer(Explainer):
    name = "gradcam"

    def check(self, model: nn.Module, task: Task) -> None:
        if last_convolution(model) is None:
            raise ConfigError(
                f"--method gradcam explains convolutional networks, and {type(model).__name__} "
                "has no convolution; use saliency, integrated_gradients or attention"
            )

    def compute(
        self, model: nn.Module, task: Task, x: torch.Tensor, target: torch.Tensor
    ) -> Attribution:
        layer = LayerGradCam(scores(model, task), last_convolution(model))
        cam = layer.attribute(x, target=target, relu_attributions=True)  # (N, 1, h, w)
        cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
        return Attribution(cam.expand_as(x).detach())
