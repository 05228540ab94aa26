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
    if meta.classes:  # class indices inside the classes; per pixel for (N, H, W) masks
        for split in (data.train, data.val, data.test):
            masks = split.y.ndim == 3
            assert split.y.dtype == (torch.uint8 if masks else torch.int64)
            assert (split.y < len(meta.classes)).all()
            if masks:
                assert split.y.shape[1:] == x.shape[2:]
    assert DataMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    _, again = sample_data(config, tmp_path / "b")  # the same files read again: the same data
    assert again.meta.fingerprint == meta.fingerprint and torch.equal(again.train.x, x)


def test_an_entry_without_a_sample_cannot_be_registered() -> None:
    with pytest.raises(ValueError, match="without sample"):
        DATASETS.register("unsampled", spec=get_spec("digits"))(lambda cfg, files: None)
