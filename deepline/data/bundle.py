"""``load_data``: a catalog entry -> train/val/test tensors, normalised, plus the metadata.

>>> from deepline.config import DataConfig
>>> bundle = load_data(DataConfig(name="digits"))
>>> bundle.meta.input_shape, bundle.meta.sizes
((1, 8, 8), {'train': 1294, 'val': 144, 'test': 359})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from deepline.config import DataConfig
from deepline.data.catalog import DatasetSpec, RawDataset, RawSplit, get_loader
from deepline.data.readers import convert_channels, resize
from deepline.data.tokenizers import ID_OFFSET, PAD_ID, UNK_ID
from deepline.errors import DataError
from deepline.registry import DATASETS


@dataclass
class Split:
    """One split: ``x`` float32 (N, C, H, W), normalised; ``y`` int64 (N,) class indices.

    Other kinds of data (``DataMeta.kind``): ``"sequence"`` x float32 (N, T, F); ``"tokens"``
    x int64 (N, context) token ids; ``"text"`` x the int64 (n_tokens,) token stream of the
    split, y empty, its examples being windows cut by :class:`deepline.data.text.WindowLoader`.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        """Examples, or tokens of a ``"text"`` stream."""
        return len(self.x)


@dataclass
class DataMeta:
    """What a model, a run and a served bundle need to know about the data."""

    name: str
    kind: str  # "image", "sequence", "tokens" (classified token ids) or "text" (a token stream)
    input_shape: tuple[int, ...]  # image (C, H, W); sequence (T, F); tokens and text (context,)
    classes: list[str]  # empty for "text"
    input_scale: float  # the raw pixel value that means 1.0
    mean: list[float]  # per channel, of the train split scaled to [0, 1]; empty for tokens
    std: list[float]
    fingerprint: str
    sizes: dict[str, int]  # examples per split; tokens for "text"
    files: list[str]
    vocab_size: int | None = None  # "tokens"/"text": ids are in range(vocab_size)
    tokenizer: str | None = None  # "tokens"/"text": the tokenizer's JSON (load_tokenizer)

    def preprocessing(self) -> dict[str, Any]:
        """How to turn a raw input into a model input.

        Images: ``(raw / input_scale - mean) / std``, after converting to ``channels`` and
        resizing to ``image_size`` (H, W). Sequences (T, F): the same scaling. Text: the
        tokenizer's ids; ``"tokens"`` shift them by ``id_offset`` and pad with ``pad_id`` up to
        ``context`` (see :func:`deepline.data.sequences.encode_texts`).
        """
        if self.kind != "image":
            return self._preprocessing_other()
        c, h, w = self.input_shape
        return {
            "kind": self.kind,
            "input_shape": [c, h, w],
            "input_scale": self.input_scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": c,
            "image_size": [h, w],
        }

    def _preprocessing_other(self) -> dict[str, Any]:
        pre: dict[str, Any] = {"kind": self.kind, "input_shape": list(self.input_shape)}
        if self.kind == "sequence":
            pre.update(input_scale=self.input_scale, mean=list(self.mean), std=list(self.std))
        if self.kind in ("text", "tokens"):
            pre.update(context=self.input_shape[0], vocab_size=self.vocab_size)
            pre["tokenizer"] = self.tokenizer
        if self.kind == "tokens":
            pre.update(pad_id=PAD_ID, unk_id=UNK_ID, id_offset=ID_OFFSET)
        return pre

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataMeta:
        """Inverse of :meth:`to_dict`; keys it does not know are ignored (newer writers), and
        fields added later with a default may be missing (older writers)."""
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise DataError(
                f"data metadata lacks {', '.join(missing)}; it was not written by to_dict"
            )
        values = {f.name: d[f.name] for f in fields if f.name in d}
        values["input_shape"] = tuple(values["input_shape"])
        return cls(**values)


@dataclass
class DataBundle:
    train: Split
    val: Split
    test: Split
    meta: DataMeta


def load_data(cfg: DataConfig) -> DataBundle:
    """Load the catalog entry ``cfg.name`` and split, resize and normalise it.

    Splits are deterministic in ``cfg.split_seed``: the test split is the official one, or
    ``cfg.test_fraction`` held out; validation is the official one, or ``cfg.val_fraction`` of
    the training split; ``cfg.limit`` then caps the training examples. Mean and std come from
    the training split only.

    Entries registered with :func:`register_bundle` (text, sequences) build the bundle
    themselves; their own docstrings say how they split.
    """
    loader = get_loader(cfg.name)
    if DATASETS.meta(cfg.name).get("builds_bundle"):
        return cast(BundleLoader, loader)(cfg)
    raw = loader(cfg)
    train, val, test = split_dataset(raw, cfg)
    xs = [_to_float(s.x, raw.input_scale, cfg) for s in (train, val, test)]
    channels = xs[0].shape[1]
    mean, std = channel_stats(xs[0]) if cfg.normalize else ([0.0] * channels, [1.0] * channels)
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    for x in xs:
        x.sub_(m).div_(s)
    splits = [Split(x, torch.from_numpy(r.y)) for x, r in zip(xs, (train, val, test), strict=True)]
    meta = DataMeta(
        name=cfg.name,
        kind="image",
        input_shape=(channels, xs[0].shape[2], xs[0].shape[3]),
        classes=list(raw.classes),
        input_scale=raw.input_scale,
        mean=mean,
        std=std,
        fingerprint=fingerprint(raw, cfg),
        sizes={"train": len(train), "val": len(val), "test": len(test)},
        files=list(raw.files),
    )
    return DataBundle(train=splits[0], val=splits[1], test=splits[2], meta=meta)


BundleLoader = Callable[[DataConfig], DataBundle]


def register_bundle(spec: DatasetSpec) -> Callable[[BundleLoader], BundleLoader]:
    """Decorator: a catalog entry whose loader returns the whole :class:`DataBundle` (text,
    sequences) instead of a ``RawDataset`` of images for ``load_data`` to split and normalise."""
    return DATASETS.register(spec.name, spec=spec, builds_bundle=True)


# ---------------------------------------------------------------------------- splitting


def split_indices(
    n: int, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of ``range(n)`` at random: (kept, held out), each sorted.

    At least one example is held out when ``fraction > 0``; at least one is kept.
    """
    held = 0 if fraction <= 0 else max(1, round(n * fraction))
    if held >= n:
        raise DataError(f"holding out {fraction:.0%} of {n} examples leaves none for training")
    order = rng.permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def split_dataset(raw: RawDataset, cfg: DataConfig) -> tuple[RawSplit, RawSplit, RawSplit]:
    """(train, val, test) raw splits, as described in :func:`load_data`."""
    rng = np.random.default_rng(cfg.split_seed)
    train, test, val = raw.train, raw.test, raw.val
    if test is None:
        train, test = _hold_out(train, cfg.test_fraction, rng, "data.test_fraction")
    if val is None:
        train, val = _hold_out(train, cfg.val_fraction, rng, "data.val_fraction")
    if cfg.limit is not None and cfg.limit < len(train):
        # A random subset, not the first rows: some sources are sorted by class.
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


# ---------------------------------------------------------------------------- tensors


def _to_float(x: np.ndarray, scale: float, cfg: DataConfig) -> torch.Tensor:
    """Raw (N, C, H, W) -> float32 in [0, 1], in the configured channels and size."""
    t = torch.from_numpy(np.require(x, np.float32, ["C", "W"])).div_(scale)
    # Both steps are linear, so order them to resize as few channels as possible.
    fewer = cfg.channels is not None and cfg.channels < t.shape[1]
    if fewer:
        t = convert_channels(t, cfg.channels)  # type: ignore[arg-type]
    if cfg.image_size is not None:
        t = resize(t, cfg.image_size)
    if cfg.channels is not None and not fewer:
        t = convert_channels(t, cfg.channels)
    return t.contiguous()


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of (N, C, H, W); a constant channel gets std 1."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in x.split(4096):  # float64 sums, without a float64 copy of the whole split
        c = chunk.double()
        total += c.sum(dim=(0, 2, 3))
        squares += c.square().sum(dim=(0, 2, 3))
    count = max(1, x.numel() // max(1, x.shape[1]))
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0.0).sqrt()
    std[std < 1e-6] = 1.0
    return mean.tolist(), std.tolist()


def fingerprint(raw: RawDataset, cfg: DataConfig) -> str:
    """sha256 over the sources' sha256 (or the arrays) and every setting that shapes the data."""
    sources = raw.sources or [_array_digest(raw)]
    settings = cfg.model_dump(
        include={"val_fraction", "test_fraction", "split_seed", "limit", "image_size", "channels",
                 "normalize", "label_column"}
    )  # fmt: skip
    payload = json.dumps(
        {"dataset": cfg.name, "sources": sources, "settings": settings}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _array_digest(raw: RawDataset) -> str:
    digest = hashlib.sha256(json.dumps(raw.classes).encode())
    for split in (raw.train, raw.val, raw.test):
        if split is not None:
            digest.update(str(split.x.shape).encode() + str(split.x.dtype).encode())
            digest.update(np.ascontiguousarray(split.x).tobytes())
            digest.update(split.y.tobytes())
    return digest.hexdigest()


# Last, so that the catalog's text and sequence modules can import this one while registering.
from deepline.data import datasets  # noqa: E402, F401  (registers the built-in catalog)
