"""Deterministic train/validation/test splits of raw examples, seeded by ``data.split_seed``."""

from __future__ import annotations

import numpy as np

from deepline.config import DataConfig
from deepline.data.catalog import RawDataset, RawSplit
from deepline.errors import DataError


def split_indices(
    n: int, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of ``range(n)`` at random: (kept, held out), each sorted.

    At least one example is held out when ``fraction > 0``; at least one is kept.

    >>> split_indices(10, 0.2, np.random.default_rng(0))[1].tolist()
    [6, 7]
    """
    held = 0 if fraction <= 0 else max(1, round(n * fraction))
    if held >= n:
        raise DataError(f"holding out {fraction:.0%} of {n} examples leaves none for training")
    order = rng.permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def split_dataset(raw: RawDataset, cfg: DataConfig) -> tuple[RawSplit, RawSplit, RawSplit]:
    """(train, val, test) raw splits.

    The test split is the official one, or ``cfg.test_fraction`` held out; validation is the
    official one, or ``cfg.val_fraction`` of the training split; ``cfg.limit`` then caps the
    training examples (a random subset: some sources are sorted by class).
    """
    rng = np.random.default_rng(cfg.split_seed)
    train, test, val = raw.train, raw.test, raw.val
    if test is None:
        train, test = _hold_out(train, cfg.test_fraction, rng, "data.test_fraction")
    if val is None:
        train, val = _hold_out(train, cfg.val_fraction, rng, "data.val_fraction")
    if cfg.limit is not None and cfg.limit < len(train):
        train = _take(train, np.sort(rng.permutation(len(train))[: cfg.limit]))
    return train, val, test


def _hold_out(
    split: RawSplit, fraction: float, rng: np.random.Generator, field: str
) -> tuple[RawSplit, RawSplit]:
    try:
        kept, held = split_indices(len(split), fraction, rng)
    except DataError as err:
        raise DataError(f"{field}={fraction}: {err}") from None
    return _take(split, kept), _take(split, held)


def _take(split: RawSplit, index: np.ndarray) -> RawSplit:
    return RawSplit(split.x[index], split.y[index])


def label_budget(train: RawSplit, budget: float, seed: int) -> tuple[RawSplit, RawSplit]:
    """(labelled, unlabelled): ``budget`` examples of each class (a whole number >= 1) or that
    fraction of each class (< 1, at least one), drawn at random with ``seed``; the rest, in
    order, unlabelled. Both hold their true labels: the unlabelled ones only for measuring."""
    if train.y.ndim != 1:
        raise DataError(
            "data.labels_per_class keeps a few labels per class: it needs one class label per "
            f"example, not targets of shape {train.y.shape[1:]}"
        )
    if budget >= 1 and budget != int(budget):
        raise DataError(f"data.labels_per_class={budget}: a count must be whole, a fraction < 1")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(train.y):
        members = np.flatnonzero(train.y == cls)
        keep = int(budget) if budget >= 1 else max(1, round(budget * len(members)))
        if keep > len(members):
            raise DataError(
                f"data.labels_per_class={int(budget)}: class {cls} has only {len(members)} "
                "training examples"
            )
        chosen.append(rng.permutation(members)[:keep])
    labelled = np.sort(np.concatenate(chosen))
    rest = np.setdiff1d(np.arange(len(train.y)), labelled)
    return _take(train, labelled), _take(train, rest)
