"""What loading data gives: the splits as tensors, and the metadata a model, run and bundle need.

>>> from deepline.config import DataConfig
>>> from deepline.data import load_data
>>> data = load_data(DataConfig(name="digits"))
>>> data.meta.codec, data.meta.input_shape, data.meta.sizes
('image', (1, 8, 8), {'train': 1294, 'val': 144, 'test': 359})
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from deepline.errors import DataError


@dataclass
class Split:
    """One split's model inputs ``x`` and targets ``y``, in the layout its codec gives.

    ``image`` x float32 (N, C, H, W), normalised; ``sequence`` x float32 (N, T, F);
    ``tokens`` x int64 (N, context) token ids; ``features`` x float32 (N, F), standardised;
    ``tabular`` x float32 (N, F), one value per column (see ``deepline.data.tabular``);
    ``text`` x the int64 (n_tokens,) token stream of the split, y empty, its examples being
    windows cut by :class:`deepline.data.loaders.WindowLoader`; ``interactions`` x int64
    ``[user, items...]`` rows (see ``deepline.data.interactions``). ``y`` holds int64 (N,)
    class indices (or next items), float32 (N, T) regression targets, or uint8 (N, H, W)
    masks (a class index per pixel).
    """

    x: torch.Tensor
    y: torch.Tensor
    # tables: each sensitive column's value per example (what fairness reports group by)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        """Examples, or tokens of a ``text`` stream."""
        return len(self.x)


@dataclass
class DataMeta:
    """What a model, a run and a served bundle need to know about the data.

    ``codec`` names the input codec (``deepline.data.codecs``) that turns raw inputs into model
    inputs; the fields after it are what codecs and tasks read (a codec's ``preprocessing``
    takes the ones it needs into the bundle).
    """

    name: str
    codec: str  # "image", "sequence", "tokens", "text", "features", ...
    input_shape: tuple[int, ...]  # image (C, H, W); sequence (T, F); tokens/text (context,); (F,)
    classes: list[str]  # empty for tasks without classes
    input_scale: float  # the raw value that means 1.0 (255 for 8-bit pixels)
    mean: list[float]  # image: per channel of the train split in [0, 1]; features: per feature
    std: list[float]
    fingerprint: str
    sizes: dict[str, int]  # examples per split; tokens for "text"
    files: list[str]
    vocab_size: int | None = None  # tokens/text: ids are in range(vocab_size)
    tokenizer: str | None = None  # tokens/text: the tokenizer's JSON (load_tokenizer)
    feature_names: list[str] = field(default_factory=list)  # features: one per input column
    target_names: list[str] = field(default_factory=list)  # regression: one per target
    target_mean: list[float] = field(default_factory=list)  # regression: of the train split
    target_std: list[float] = field(default_factory=list)
    columns: list[dict[str, Any]] = field(default_factory=list)  # tabular: the fitted schema
    sensitive: list[str] = field(default_factory=list)  # tabular: columns fairness groups by
    # interactions: items (ids, titles, genres), training counts, users' whole histories (each
    # a string of item indices, "3 17 5")
    interactions: dict[str, Any] = field(default_factory=dict)
    # series: the whole target series (times, values), its season, horizon, context and the
    # backtest's origins per split (indices of each origin's first forecast value)
    series: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataMeta:
        """Inverse of :meth:`to_dict`; keys it does not know are ignored (newer writers), and
        fields added later with a default may be missing (older writers, whose ``kind`` is
        today's ``codec``)."""
        if "codec" not in d and "kind" in d:
            d = {**d, "codec": d["kind"]}
        fields = dataclasses.fields(cls)
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in d]
        if missing:
            raise DataError(
                f"data metadata lacks {', '.join(missing)}; it was not written by to_dict"
            )
        values = {f.name: d[f.name] for f in fields if f.name in d}
        values["input_shape"] = tuple(values["input_shape"])
        return cls(**values)


@dataclass
class DataSplits:
    """The train, validation and test splits of a dataset, with their :class:`DataMeta`."""

    train: Split
    val: Split
    test: Split
    meta: DataMeta
    # few labels (data.labels_per_class): the training images without their labels; ``y`` holds
    # the true labels for measuring pseudo-labels only, never for a loss
    unlabelled: Split | None = None

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split '{name}'. Allowed: train, val, test")
        split: Split = getattr(self, name)
        return split
