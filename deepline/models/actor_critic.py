"""An actor-critic for discrete actions: a policy network and a value network side by side."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.registry import MODELS

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class ActorCriticConfig(ModelConfig):
    name: Literal["actor_critic"] = "actor_critic"
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="layer widths")
    activation: Literal["tanh", "relu"] = "tanh"
    shared: bool = Field(
        False, description="one body for policy and value (else two, as Stable-Baselines3's "
        "MlpPolicy)",
    )  # fmt: skip


def mlp(width: int, hidden: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the ``hidden`` widths, each followed by the activation."""
    layers: list[nn.Module] = []
    for out in hidden:
        layers += [nn.Linear(width, out), ACTIVATIONS[activation]()]
        width = out
    return nn.Sequential(*layers)


@MODELS.register(
    "actor_critic",
    config=ActorCriticConfig,
    example={"data": {"name": "CartPole-v1"}, "task": {"name": "policy", "n_envs": 2,
             "n_steps": 8}, "model": {"hidden": [16]}},
)  # fmt: skip
class ActorCritic(nn.Module):
    """Input: (B, F) observations. Output: (B, A + 1): the A actions' logits, then the value
    of the observation (the expected discounted return from it).

    Weights start orthogonal (gain sqrt 2 for hidden layers, 0.01 for the logits, 1 for the
    value), as in Stable-Baselines3 and the PPO paper's code.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (1, 1),
        hidden: list[int] | tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        shared: bool = False,
    ) -> None:
        super().__init__()
        width = in_channels * image_size[0] * image_size[1]
        hidden = list(hidden)
        self.policy_body = mlp(width, hidden, activation)
        self.value_body = None if shared else mlp(width, hidden, activation)
        features = hidden[-1] if hidden else width
        self.logits = nn.Linear(features, num_classes)
        self.value = nn.Linear(features, 1)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.orthogonal_(module.weight, math.sqrt(2))
                nn.init.zeros_(module.bias)
        nn.init.orthogonal_(self.logits.weight, 0.01)
        nn.init.orthogonal_(self.value.weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, F)
        policy = self.policy_body(x)
        value = policy if self.value_body is None else self.value_body(x)
        return torch.cat([self.logits(policy), self.value(value)], dim=1)  # (B, A + 1)
