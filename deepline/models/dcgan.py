"""DCGAN (Radford et al. 2016), optionally class-conditional (Mirza & Osindero 2014).

The generator maps a latent vector (noise, then a one-hot class when conditional) to an image in
[-1, 1]; the discriminator scores an image (with its class as extra constant channels) as real
or generated. Both live in one module so that one optimizer step and one checkpoint hold the
pair; ``forward(latent)`` is the generator alone, which is what export and serving see.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.func import functional_call

from deepline.config import ModelConfig
from deepline.errors import ConfigError
from deepline.registry import MODELS


class DCGANConfig(ModelConfig):
    name: Literal["dcgan"] = "dcgan"
    width: int = Field(64, ge=1, description="channels of the discriminator's first layer; "
                       "the generator's last hidden layer has 2x, its first 4x")  # fmt: skip
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="in the discriminator")


@MODELS.register(
    "dcgan",
    config=DCGANConfig,
    example={"data": {"name": "digits"},
             "task": {"name": "image_generation", "latent_dim": 8},
             "model": {"width": 4}},
)  # fmt: skip
class DCGAN(nn.Module):
    """Generator: linear projection to (4w, H/4, W/4), then two stride-2 transposed
    convolutions (batch norm and ReLU between) to (C, H, W) with tanh. Discriminator: two
    stride-2 convolutions with LeakyReLU(0.2) (batch norm on the second) and a linear score.

    Input: (B, latent_dim + num_classes) latents, the class one-hot at the end (none when
    ``num_classes`` is 0). Output: (B, C, H, W) images in [-1, 1]; with ``real`` images as well,
    the discriminator's logits (3, B) for the real images, the generated ones (no gradient to
    the generator), and the generated ones again (gradient to the generator only).
    """

    def __init__(
        self,
        latent_dim: int,
        num_classes: int,
        out_channels: int,
        image_size: tuple[int, int] = (28, 28),
        width: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        h, w = image_size
        if h % 4 or w % 4:
            raise ConfigError(f"model dcgan: image sides must be multiples of 4, got {h}x{w}")
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.generator = Generator(latent_dim + num_classes, out_channels, (h, w), width)
        self.discriminator = Discriminator(out_channels + num_classes, (h, w), width, dropout)

    def forward(self, latent: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        fake = self.generator(latent)
        if real is None:
            return fake
        classes = latent[:, self.latent_dim :]
        critic = self.discriminator
        frozen = {name: p.detach() for name, p in critic.named_parameters()}
        return torch.stack([
            critic(real, classes),
            critic(fake.detach(), classes),  # trains the discriminator only
            functional_call(critic, frozen, (fake, classes)),  # trains the generator only
        ])  # fmt: skip


class Generator(nn.Module):
    def __init__(
        self, in_features: int, out_channels: int, image_size: tuple[int, int], width: int
    ) -> None:
        super().__init__()
        self.base = (4 * width, image_size[0] // 4, image_size[1] // 4)
        c, h, w = self.base
        self.project = nn.Sequential(
            nn.Linear(in_features, c * h * w, bias=False), nn.BatchNorm1d(c * h * w), nn.ReLU(True)
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(c, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * width, out_channels, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.up(self.project(latent).view(-1, *self.base))


class Discriminator(nn.Module):
    def __init__(
        self, in_channels: int, image_size: tuple[int, int], width: int, dropout: float
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, True),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.score = nn.Linear(2 * width * (image_size[0] // 4) * (image_size[1] // 4), 1)

    def forward(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        if classes.shape[1]:  # the class as constant channels beside the image
            maps = classes[:, :, None, None].expand(-1, -1, *images.shape[2:])
            images = torch.cat([images, maps.to(images.dtype)], 1)
        return self.score(self.features(images)).squeeze(1)
