"""Attention rollout (Abnar and Zuidema 2020): each layer's head-averaged attention, mixed
half-and-half with the identity for the residual path, multiplied through the layers; the row
of the positions the prediction reads (the [CLS] token, their mean, or the last token) gives
each input position's share. For attention models only (``transformer``, ``gpt``); it does not
depend on the target class."""

from __future__ import annotations

import torch
from torch import nn

from deepline.errors import ConfigError
from deepline.models.attention import capture_attention
from deepline.registry import EXPLAINERS
from deepline.tasks import Task
from deepline.trust.explain.base import Attribution, Explainer


def rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """(N, T', T') relevance of every position for every position, through all layers."""
    result = None
    for attention in maps:
        a = attention.mean(1)  # heads
        a = 0.5 * a + 0.5 * torch.eye(a.size(-1), device=a.device)
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    assert result is not None
    return result


@EXPLAINERS.register(
    "attention",
    example={"data": {"name": "sequential-digits"}, "task": {"name": "sequence_classification"},
             "model": {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1}},
)  # fmt: skip
class AttentionExplainer(Explainer):
    name = "attention"

    def check(self, model: nn.Module, task: Task) -> None:
        if getattr(model, "attention_readout", None) is None:
            raise ConfigError(
                f"--method attention explains attention models (transformer, gpt), and "
                f"{type(model).__name__} is not one; use saliency or integrated_gradients"
            )

    @torch.no_grad()
    def compute(
        self, model: nn.Module, task: Task, x: torch.Tensor, target: torch.Tensor
    ) -> Attribution:
        with capture_attention(model) as maps:
            model(x)
        relevance = rollout(maps)
        extra = relevance.size(-1) - x.size(1)  # positions before the inputs ([CLS])
        readout = str(model.attention_readout)
        rows = {"first": relevance[:, 0], "last": relevance[:, -1], "mean": relevance.mean(1)}
        per_position = rows[readout][:, extra:]  # (N, T)
        if x.is_floating_point():  # (N, T, F) sequences: each value of a step shares its share
            per_position = per_position[..., None].expand_as(x)
        return Attribution(per_position.detach())
