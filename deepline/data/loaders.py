"""In-memory batch loading with a resumable position.

A ``BatchLoader`` shuffles with a generator seeded by (seed, epoch), so the order of any epoch can
be rebuilt from two integers; its state is (epoch, position) plus the augmentation generator.
Sharding for distributed training takes every ``world_size``-th index, starting at ``rank``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch

from deepline.data.transforms import BatchAugment


class Loader(Protocol):
    """What the trainer needs of training batches: a resumable, epoch-aware iterable."""

    epoch: int
    position: int

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def generator_state(self) -> torch.Tensor: ...
    def set_generator_state(self, state: torch.Tensor) -> None: ...


class ResumablePosition:
    """Epoch and position bookkeeping shared by the loaders: the order of any epoch is rebuilt
    from integers, so (epoch, position) plus the augmentation generator is the whole state."""

    seed: int
    epoch: int
    position: int  # batches already yielded in this epoch
    generator: torch.Generator

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def generator_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_generator_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class BatchLoader(ResumablePosition):
    """Yields ``(x, y)`` batches from tensors already in memory.

    >>> x, y = torch.randn(10, 1, 4, 4), torch.arange(10)
    >>> [len(b[1]) for b in BatchLoader(x, y, batch_size=4)]
    [4, 4, 2]
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        augment: BatchAugment | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.augment = augment if augment is not None and augment.active else None
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # batches already yielded in this epoch
        self.generator = torch.Generator().manual_seed(seed + 1)  # for augmentation only

    def __len__(self) -> int:
        n = len(self._indices_count())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _indices_count(self) -> range:
        return range(self.rank, len(self.y), self.world_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The indices this rank visits in ``epoch``."""
        n = len(self.y)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            perm = torch.randperm(n, generator=g)
        else:
            perm = torch.arange(n)
        return perm[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(self.epoch)
        for i in range(self.position, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x, y = self.x[idx], self.y[idx]
            if self.augment is not None:
                x = self.augment(x, self.generator)
            self.position = i + 1
            yield x, y
        self.epoch, self.position = self.epoch + 1, 0
