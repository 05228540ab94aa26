"""A Q-network for discrete actions: each action's value, learned by DQN."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.models.actor_critic import mlp
from deepline.registry import MODELS


class QNetworkConfig(ModelConfig):
    name: Literal["q_network"] = "q_network"
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="layer widths")
    activation: Literal["tanh", "relu"] = "relu"
    dueling: bool = Field(
        False, description="a state value and action advantages, Q = V + A - mean(A) (Wang et "
        "al. 2016)",
    )  # fmt: skip


@MODELS.register(
    "q_network",
    config=QNetworkConfig,
    example={"data": {"name": "CartPole-v1"}, "task": {"name": "policy", "algorithm": "dqn",
             "train_freq": 8, "gradient_steps": 2, "learning_starts": 16},
             "model": {"hidden": [16]}},
)  # fmt: skip
class QNetwork(nn.Module):
    """Input: (B, F) observations. Output: (B, A + 1): the A actions' values (expected
    discounted returns), then the largest of them (the observation's value under the greedy
    policy), so a Q-network answers where an actor-critic does."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int] = (1, 1),
        hidden: list[int] | tuple[int, ...] = (64, 64),
        activation: str = "relu",
        dueling: bool = False,
    ) -> None:
        super().__init__()
        width = in_channels * image_size[0] * image_size[1]
        self.body = mlp(width, list(hidden), activation)
        features = hidden[-1] if hidden else width
        self.advantages = nn.Linear(features, num_classes)
        self.value = nn.Linear(features, 1) if dueling else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x.flatten(1))
        q = self.advantages(features)  # (B, A)
        if self.value is not None:
            q = self.value(features) + q - q.mean(1, keepdim=True)
        return torch.cat([q, q.max(1, keepdim=True).values], dim=1)  # (B, A + 1)
