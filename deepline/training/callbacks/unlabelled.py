"""What the methods that learn from unlabelled images share (``train.method``): a seeded
stream of unlabelled images per step, their weak view (the data's own augmentation) and their
strong view (RandAugment and Cutout on top, in pixel space), all pure functions of the step,
so a resumed run draws the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from deepline.data.loaders import UnlabelledStream
from deepline.data.meta import Split
from deepline.data.randaugment import RandAugment
from deepline.data.transforms import BatchAugment
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


@dataclass
class Unlabelled:
    """The unlabelled split and how its images are drawn: the weak augmentation, the pixel
    statistics that undo the normalisation, the seed, and this process's share."""

    images: Split
    weak: BatchAugment
    mean: list[float]
    std: list[float]
    seed: int
    rank: int = 0
    world_size: int = 1


class UnlabelledImages(Callback):
    """Base of the methods' callbacks: installs ``objective`` at ``fit_start``."""

    order = 8  # its logs are ready before MetricsLog writes the step's line

    def __init__(self, source: Unlabelled, batch_size: int, strong: RandAugment) -> None:
        images = source.images
        self.stream = UnlabelledStream(images.x, images.y, batch_size, source.seed + 7919,
                                       source.rank, source.world_size)  # fmt: skip
        self.weak = source.weak if source.weak.active else None
        self.strong = strong
        self.mean = torch.tensor(source.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(source.std).view(1, -1, 1, 1)
        self.seed, self.rank = source.seed, source.rank

    def fit_start(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.mean, self.std = self.mean.to(trainer.device), self.std.to(trainer.device)
        trainer.objective = self.objective

    def objective(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        """This micro-batch's unlabelled images and hidden labels (on the device), and the
        generator of their augmentations (each micro-batch of an accumulated step its own)."""
        trainer = self.trainer
        accumulate = trainer.config.accumulate
        draw = trainer.step * accumulate + (trainer.train_loader.position - 1) % accumulate
        x, hidden = self.stream.batch(draw)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + draw * 31 + self.rank)
        return x.to(trainer.device), hidden.to(trainer.device), generator

    def weak_view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.weak(x, generator) if self.weak is not None else x

    def strong_view(self, weak: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """RandAugment and Cutout of a weak view, in [0, 1] pixels, normalised again."""
        unit = (weak * self.std + self.mean).clamp(0.0, 1.0)
        return (self.strong(unit, generator) - self.mean) / self.std
