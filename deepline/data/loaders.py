"""In-memory batch loading with a resumable position.

A ``BatchLoader`` shuffles with a generator seeded by (seed, epoch), and augments each batch with
a generator seeded by (seed, epoch, position, rank), so any batch can be rebuilt from integers:
its state is (epoch, position). Sharding for distributed training takes every
``world_size``-th index, starting at ``rank``. A ``WindowLoader`` draws random windows of a
token stream (nanoGPT's ``get_batch``), resumably. Both may keep their tensors on a training
device (``to``), so batches need no copy from the host.

>>> tokens = torch.arange(100)
>>> x, y = next(iter(WindowLoader(tokens, context=8, batch_size=4, steps_per_epoch=10)))
>>> x.shape, bool((y == x + 1).all())
(torch.Size([4, 8]), True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch

from deepline.data.transforms import BatchAugment, Geometry
from deepline.errors import DataError


class Loader(Protocol):
    """What the trainer needs of training batches: a resumable, epoch-aware iterable."""

    epoch: int
    position: int

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class PlaysWithModel(Protocol):
    """Training batches the model itself makes by acting (a policy's rollouts): given the
    model before the first batch; what acting measured (the mean return of the episodes that
    ended since the last call, ...) is logged at log steps."""

    def attach(self, model: Any) -> None: ...
    def measurements(self) -> dict[str, float]: ...
    def to(self, device: torch.device) -> Any: ...


@runtime_checkable
class KeepsTensors(Protocol):
    """Training batches whose state holds tensors (a replay buffer): a checkpoint keeps them
    in ``loader.safetensors`` beside ``state_dict``'s JSON, and gives them back after it."""

    def state_tensors(self) -> dict[str, torch.Tensor]: ...
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None: ...


def batch_seed(seed: int, epoch: int, position: int, rank: int) -> int:
    """A 64-bit seed that is a pure function of the four integers (no nearby collisions)."""
    digest = hashlib.sha256(f"deepline-windows:{seed}:{epoch}:{position}:{rank}".encode())
    return int.from_bytes(digest.digest()[:8], "little")


class ResumablePosition:
    """Epoch and position bookkeeping shared by the loaders: every batch is a pure function of
    integers, so (epoch, position) is the whole state."""

    seed: int
    epoch: int
    position: int  # batches already yielded in this epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


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
        geometry: Geometry | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.geometry = geometry  # y are masks or boxes, moved with their images
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.augment = augment if augment is not None and augment.active else None
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # batches already yielded in this epoch
        self.last_index = torch.zeros(0, dtype=torch.long)  # the examples of the last batch

    def tensors(self) -> list[torch.Tensor]:
        return [self.x, self.y]

    def to(self, device: torch.device) -> BatchLoader:
        """Keep the examples on ``device``: batches are cut (and augmented) there."""
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

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

    def draws(self, epoch: int, position: int) -> torch.Generator:
        """A generator for the random choices of batch ``position`` of ``epoch`` (samplers
        that draw their batches: a resumed epoch draws the same)."""
        return torch.Generator().manual_seed(
            batch_seed(self.seed, epoch, position, self.rank) % 2**63
        )

    def batch(self, epoch: int, position: int, order: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Batch ``position`` of ``epoch``, given the epoch's ``order``."""
        idx = order[position * self.batch_size : (position + 1) * self.batch_size]
        self.last_index = idx
        x, y = self.x[idx], self.y[idx]
        if self.augment is not None:
            seed = batch_seed(self.seed, epoch, position, self.rank)
            generator = torch.Generator().manual_seed(seed)
            if self.geometry is not None:
                x, y = self.augment(x, generator, y, self.geometry)
            else:
                x = self.augment(x, generator)
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(self.epoch).to(self.x.device)
        for i in range(self.position, len(self)):
            x, y = self.batch(self.epoch, i, order)
            self.position = i + 1
            yield x, y
        self.epoch, self.position = self.epoch + 1, 0


class WeightedLoader(BatchLoader):
    """Batches drawn with replacement, each example with probability proportional to its
    weight: training on them minimises the weighted loss (how a learner that only takes
    batches accepts scikit-learn's ``sample_weight``). Seeded by (seed, epoch, position)."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, batch_size: int,
        seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(x, y, batch_size, seed=seed)
        if len(weights) != len(y) or not bool((weights >= 0).all()) or not weights.sum() > 0:
            raise ValueError("sample weights: one non-negative weight per example, not all 0")
        self.weights = weights.double()

    def batch(self, epoch: int, position: int, order: torch.Tensor) -> tuple[torch.Tensor, ...]:
        idx = torch.multinomial(
            self.weights, self.batch_size, True, generator=self.draws(epoch, position)
        )
        self.last_index = idx
        return self.x[idx], self.y[idx]


# ---------------------------------------------------------------------------- token windows


class WindowLoader(ResumablePosition):
    """Random windows of a token stream, as nanoGPT's ``get_batch``, with an exact resume.

    Each batch is ``(x, y)``: x int64 (batch_size, context) windows starting at random offsets,
    y the same windows shifted by one token (the targets). The offsets of batch ``position`` of
    ``epoch`` on ``rank`` come from a generator seeded by (seed, epoch, position, rank) alone,
    so a loader restored from ``state_dict`` at any point yields the same batches as one that
    ran there, and each rank of a distributed run draws its own windows (``batch_size`` is the
    per-process batch). An "epoch" is ``steps_per_epoch`` batches.

    It offers what the trainer uses of :class:`~deepline.data.loaders.BatchLoader`.

    >>> loader = WindowLoader(torch.arange(1000), context=16, batch_size=2, steps_per_epoch=3)
    >>> [tuple(x.shape) for x, _ in loader], loader.epoch
    ([(2, 16), (2, 16), (2, 16)], 1)
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        context: int,
        batch_size: int,
        steps_per_epoch: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if tokens.ndim != 1:
            raise ValueError(
                f"WindowLoader wants a 1-D token stream, got shape {tuple(tokens.shape)}"
            )
        if context < 1 or batch_size < 1 or steps_per_epoch < 1:
            raise ValueError(
                f"context, batch_size and steps_per_epoch must be >= 1; got {context}, "
                f"{batch_size}, {steps_per_epoch}"
            )
        if len(tokens) <= context:
            raise DataError(
                f"a stream of {len(tokens)} tokens holds no window of context {context} + 1 "
                "(lower data.context)"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in range(world_size={world_size})")
        self.tokens = tokens.long()
        self.context = context
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # batches already yielded in this epoch
        self._span = torch.arange(context + 1)  # (T + 1,)

    def tensors(self) -> list[torch.Tensor]:
        return [self.tokens]

    def to(self, device: torch.device) -> WindowLoader:
        """Keep the token stream on ``device``: windows are cut there."""
        self.tokens, self._span = self.tokens.to(device), self._span.to(device)
        return self

    def __len__(self) -> int:
        return self.steps_per_epoch

    def batch(self, epoch: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``position`` of ``epoch`` on this rank: x, y int64 (batch_size, context)."""
        g = torch.Generator().manual_seed(batch_seed(self.seed, epoch, position, self.rank))
        starts = torch.randint(len(self.tokens) - self.context, (self.batch_size,), generator=g)
        windows = self.tokens[starts.to(self.tokens.device)[:, None] + self._span]  # (B, T + 1)
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(self.position, len(self)):
            x, y = self.batch(self.epoch, i)
            self.position = i + 1
            yield x, y
        self.epoch, self.position = self.epoch + 1, 0


def eval_windows(
    tokens: torch.Tensor,
    context: int,
    batch_size: int,
    max_batches: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows from the start of the stream, for validation: deterministic.

    Window ``k`` is ``tokens[k*context : (k+1)*context]`` with targets shifted by one; the
    last incomplete window is dropped. Batches of ``batch_size`` windows (the last may be
    smaller), at most ``max_batches`` of them; rank ``r`` of ``world_size`` takes every
    ``world_size``-th window starting at ``r``.

    >>> [tuple(x.shape) for x, _ in eval_windows(torch.arange(100), 8, 5)]
    [(5, 8), (5, 8), (2, 8)]
    """
    if tokens.ndim != 1:
        raise ValueError(f"eval_windows wants a 1-D token stream, got shape {tuple(tokens.shape)}")
    count = max(0, (len(tokens) - 1) // context)  # windows that have all their targets
    starts = torch.arange(count)[rank::world_size] * context
    if max_batches is not None:
        starts = starts[: max_batches * batch_size]
    if len(starts) == 0:
        return []
    span = torch.arange(context + 1)
    batches = []
    for chunk in starts.split(batch_size):
        windows = tokens.long()[chunk[:, None] + span]  # (B, T + 1)
        batches.append((windows[:, :-1].contiguous(), windows[:, 1:].contiguous()))
    return batches


class CyclingLoader(BatchLoader):
    """A few labelled examples seen ``batches`` times an epoch: the epoch's order is as many
    seeded permutations of them as its full batches need (how FixMatch counts an epoch in
    steps, not in passes over 40 labels)."""

    def __init__(self, loader: BatchLoader, batches: int) -> None:
        super().__init__(
            loader.x, loader.y, loader.batch_size, shuffle=True, seed=loader.seed,
            augment=loader.augment, rank=loader.rank, world_size=loader.world_size,
            geometry=loader.geometry,
        )  # fmt: skip
        self.batches = batches

    def __len__(self) -> int:
        return self.batches

    def order(self, epoch: int) -> torch.Tensor:
        n, need = len(self.y), self.batches * self.batch_size * self.world_size
        passes = []
        for j in range(-(-need // n)):
            g = torch.Generator().manual_seed(batch_seed(self.seed, epoch, j, 0) % 2**63)
            passes.append(torch.randperm(n, generator=g))
        return torch.cat(passes)[self.rank :: self.world_size]


class UnlabelledStream:
    """``batch_size`` unlabelled examples for each step, a pure function of (seed, step, rank):
    consecutive steps walk through seeded permutations of the examples, so a resumed run draws
    the same. Yields (x, hidden labels); the labels are for measuring only."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:  # fmt: skip
        if len(x) == 0:
            raise ValueError("no unlabelled examples")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._pass: tuple[int, torch.Tensor] | None = None

    def _order(self, p: int) -> torch.Tensor:
        if self._pass is None or self._pass[0] != p:
            g = torch.Generator().manual_seed(batch_seed(self.seed, p, -1, self.rank) % 2**63)
            self._pass = (p, torch.randperm(len(self.x), generator=g))
        return self._pass[1]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.x)
        positions = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
        passes = positions // n
        idx = torch.empty(self.batch_size, dtype=torch.long)
        for p in passes.unique().tolist():
            chosen = passes == p
            idx[chosen] = self._order(int(p))[positions[chosen] % n]
        return self.x[idx], self.y[idx]
