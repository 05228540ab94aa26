"""The contract of every catalog entry, on the sample files it writes in its own format: its
reader gives train/val/test splits whose metadata matches them, deterministically, for a codec
and a task that exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepline.config import DataConfig
from deepline.data import DataMeta, get_spec
from deepline.data.codecs import codec_for
from deepline.registry import CODECS, DATASETS, TASKS
from tests.contracts.conftest import sample_data


@pytest.mark.parametrize("name", DATASETS.names())
def test_reads_its_sample_into_consistent_splits(name: str, tmp_path: Path) -> None:
    config, data = sample_data(DataConfig(name=name), tmp_path / "a")
    meta = data.meta
    assert meta.name == name and meta.codec in CODECS and get_spec(name).task in TASKS
    assert meta.sizes == {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    assert len(data.train) > 0 and len(meta.fingerprint) == 64
    codec = codec_for(meta)
    x = data.train.x
    if codec.input_spec()["dtype"] == "int64":
        assert x.dtype == torch.int64
    else:
        assert x.dtype == torch.float32 and x.shape[1:] == meta.input_shape
    if meta.classes:  # class indices inside the classes: per example, per pixel or per box
        for split in (data.train, data.val, data.test):
            check_targets(split.y, len(meta.classes), x.shape[2:])
    assert DataMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    _, again = sample_data(config, tmp_path / "b")  # the same files read again: the same data
    assert again.meta.fingerprint == meta.fingerprint and torch.equal(again.train.x, x)


def check_targets(y: torch.Tensor, classes: int, size: tuple[int, ...]) -> None:
    """Class indices (N,); uint8 (N, H, W) masks of the images' size; or float32 (N, M, 5)
    box rows inside the images, of a class, padding (-1) or an ignored region (-2)."""
    if y.dtype == torch.uint8:
        assert y.ndim == 3 and y.shape[1:] == size and (y < classes).all()
    elif y.is_floating_point() and y.ndim == 3:
        labels, boxes = y[..., 4], y[..., :4][y[..., 4] != -1]
        assert y.shape[-1] == 5 and ((labels >= -2) & (labels < classes)).all()
        assert labels.eq(labels.round()).all() and (labels >= 0).any()
        h, w = size
        assert (
            (boxes >= 0).all() and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()
        )
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    else:
        assert y.dtype == torch.int64 and y.ndim == 1 and (y < classes).all()


def test_an_entry_without_a_sample_cannot_be_registered() -> None:
    with pytest.raises(ValueError, match="without sample"):
        DATASETS.register("unsampled", spec=get_spec("digits"))(lambda cfg, files: None)
