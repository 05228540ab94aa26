"""Numeric tables: rows of named features with regression targets (or class labels), split and
standardised with the training split's statistics (the ``features`` codec)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from deepline.config import DataConfig
from deepline.data.catalog import RawDataset, RawSplit
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.data.splitting import split_dataset
from deepline.errors import DataError


def feature_splits(
    cfg: DataConfig,
    x: np.ndarray,
    y: np.ndarray,
    feature_names: list[str],
    target_names: list[str] | None = None,
    classes: list[str] | None = None,
    sources: list[str] | None = None,
    files: list[str] | None = None,
) -> DataSplits:
    """x (N, F) numbers and y (N,) class indices or (N,) / (N, T) targets -> standardised
    splits: x float32 (N, F) with each feature's training mean 0 and std 1 (with
    ``data.normalize``); regression targets stay in their units as float32 (N, T), their
    training mean and std kept in the meta for the task to scale its loss."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise DataError(f"a table needs x (N, {len(feature_names)}), got {x.shape}")
    regression = classes is None
    y = np.asarray(y, dtype=np.float32 if regression else np.int64)
    if regression and y.ndim == 1:
        y = y[:, None]
    raw = RawDataset(RawSplit(x, y), list(classes or []), input_scale=1.0, sources=sources or [])
    parts = split_dataset(raw, cfg)
    train = parts[0].x
    mean = train.mean(0) if cfg.normalize else np.zeros(x.shape[1])
    std = train.std(0) if cfg.normalize else np.ones(x.shape[1])
    std[std < 1e-12] = 1.0
    splits = [
        Split(torch.from_numpy(((p.x - mean) / std).astype(np.float32)), torch.from_numpy(p.y))
        for p in parts
    ]
    targets = parts[0].y.astype(np.float64) if regression else None
    meta = DataMeta(
        name=cfg.name,
        codec="features",
        input_shape=(x.shape[1],),
        classes=list(classes or []),
        input_scale=1.0,
        mean=mean.tolist(),
        std=std.tolist(),
        fingerprint=_fingerprint(cfg, raw, sources),
        sizes={"train": len(parts[0]), "val": len(parts[1]), "test": len(parts[2])},
        files=list(files or []),
        feature_names=list(feature_names),
        target_names=list(target_names or ([] if not regression else ["target"])),
        target_mean=targets.mean(0).tolist() if targets is not None else [],
        target_std=np.maximum(targets.std(0), 1e-12).tolist() if targets is not None else [],
    )
    return DataSplits(splits[0], splits[1], splits[2], meta)


def _fingerprint(cfg: DataConfig, raw: RawDataset, sources: list[str] | None) -> str:
    digest = hashlib.sha256()
    if sources:
        digest.update(json.dumps(sources).encode())
    else:
        digest.update(np.ascontiguousarray(raw.train.x).tobytes())
        digest.update(np.ascontiguousarray(raw.train.y).tobytes())
    settings: dict[str, Any] = cfg.model_dump(
        include={"val_fraction", "test_fraction", "split_seed", "limit", "normalize"}
    )
    payload = {"dataset": cfg.name, "data": digest.hexdigest(), "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
