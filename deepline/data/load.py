"""``load_data``: a catalog entry -> train/val/test tensors, normalised, plus the metadata.

>>> from deepline.config import DataConfig
>>> data = load_data(DataConfig(name="digits"))
>>> data.meta.input_shape, data.meta.sizes
((1, 8, 8), {'train': 1294, 'val': 144, 'test': 359})
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from deepline.config import DataConfig
from deepline.data.catalog import RawDataset, get_reader, get_spec
from deepline.data.fetch import ensure_files
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.data.readers import convert_channels, resize
from deepline.data.splitting import label_budget, split_dataset
from deepline.errors import DataError


def load_data(cfg: DataConfig) -> DataSplits:
    """Load the catalog entry ``cfg.name``: its files are found (or downloaded) and verified,
    then read by :func:`read_data`."""
    spec = get_spec(cfg.name)
    return read_data(cfg, ensure_files(spec, cfg.data_dir) if spec.files else {})


def read_data(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """The entry's reader on ``files`` (name -> path), then, for raw images, the split, resize
    and normalisation below. Readers of text, sequences and tables return finished splits;
    their docstrings say how they split.

    Images: splits are deterministic in ``cfg.split_seed`` (``split_dataset``); mean and std
    per channel come from the training split only.
    """
    read = get_reader(cfg.name)
    raw = read(cfg, files)
    if isinstance(raw, DataSplits) and cfg.labels_per_class is not None:
        raise DataError(
            f"data.labels_per_class keeps a few labels of an image dataset; {cfg.name} is not one"
        )
    return raw if isinstance(raw, DataSplits) else image_splits(raw, cfg)


def image_splits(raw: RawDataset, cfg: DataConfig) -> DataSplits:
    """Raw images -> float (N, C, H, W) splits in the configured channels and size, normalised."""
    train, val, test = split_dataset(raw, cfg)
    raws = [train, val, test]
    if cfg.labels_per_class is not None:  # the unlabelled images go last
        train, unlabelled = label_budget(train, cfg.labels_per_class, cfg.labels_seed)
        raws = [train, val, test, unlabelled]
    xs = [_to_float(s.x, raw.input_scale, cfg) for s in raws]
    channels = xs[0].shape[1]
    # statistics of every training image, labelled or not
    pixels = torch.cat([xs[0], xs[3]]) if len(xs) == 4 else xs[0]
    mean, std = channel_stats(pixels) if cfg.normalize else ([0.0] * channels, [1.0] * channels)
    del pixels
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    for x in xs:
        x.sub_(m).div_(s)
    splits = [Split(x, torch.from_numpy(r.y)) for x, r in zip(xs, raws, strict=True)]
    meta = DataMeta(
        name=cfg.name,
        codec="image",
        input_shape=(channels, xs[0].shape[2], xs[0].shape[3]),
        classes=list(raw.classes),
        input_scale=raw.input_scale,
        mean=mean,
        std=std,
        fingerprint=fingerprint(raw, cfg),
        sizes={
            "train": len(train),
            "val": len(val),
            "test": len(test),
            **({"unlabelled": len(raws[3])} if len(raws) == 4 else {}),
        },
        files=list(raw.files),
    )
    return DataSplits(
        splits[0], splits[1], splits[2], meta, splits[3] if len(splits) == 4 else None
    )


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
    if cfg.labels_per_class is not None:  # only when set: earlier fingerprints stay valid
        settings.update(labels_per_class=cfg.labels_per_class, labels_seed=cfg.labels_seed)
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
