"""load_data on data that needs no downloaded file: digits, and files written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from deepline.config import DataConfig
from deepline.data import DataMeta, DataSplits, load_data
from deepline.data.codecs import codec_for
from deepline.data.splitting import split_indices
from deepline.errors import DataError


@given(st.integers(1, 500), st.floats(0.0, 0.9), st.integers(0, 2**32 - 1))
def test_split_indices_disjoint_covering_deterministic(n: int, fraction: float, seed: int) -> None:
    try:
        kept, held = split_indices(n, fraction, np.random.default_rng(seed))
    except DataError:
        assert round(n * fraction) >= n or (n == 1 and fraction > 0)
        return
    assert sorted([*kept, *held]) == list(range(n))
    again = split_indices(n, fraction, np.random.default_rng(seed))
    assert np.array_equal(kept, again[0]) and np.array_equal(held, again[1])


def test_digits_needs_no_file() -> None:
    b = load_data(DataConfig(name="digits"))
    assert b.meta.sizes == {"train": 1294, "val": 144, "test": 359}
    assert b.train.x.shape == (1294, 1, 8, 8) and b.train.x.dtype == torch.float32
    assert b.train.y.dtype == torch.int64 and len(b.test) == 359
    assert b.meta.input_scale == 16.0 and b.meta.classes == [str(i) for i in range(10)]
    assert b.meta.files == [] and len(b.meta.fingerprint) == 64
    assert abs(float(b.train.x.mean())) < 1e-4 and abs(float(b.train.x.std()) - 1) < 1e-3


def test_digits_resize_and_channels() -> None:
    b = load_data(DataConfig(name="digits", image_size=(16, 12), channels=3, normalize=False))
    assert b.train.x.shape[1:] == (3, 16, 12) and b.meta.input_shape == (3, 16, 12)
    assert b.meta.mean == [0.0] * 3 and b.meta.std == [1.0] * 3
    assert float(b.train.x.min()) >= 0.0 and float(b.train.x.max()) <= 1.0
    pre = codec_for(b.meta).preprocessing
    assert json.loads(json.dumps(pre)) == pre
    assert pre["channels"] == 3 and pre["image_size"] == [16, 12] and pre["input_scale"] == 16.0


def test_meta_round_trip_and_fingerprint() -> None:
    b = load_data(DataConfig(name="digits", limit=100))
    d = json.loads(json.dumps(b.meta.to_dict()))
    assert DataMeta.from_dict(d) == b.meta
    with pytest.raises(DataError, match="classes"):
        DataMeta.from_dict({k: v for k, v in d.items() if k != "classes"})
    same = load_data(DataConfig(name="digits", limit=100))
    other = load_data(DataConfig(name="digits", limit=100, split_seed=1))
    assert same.meta.fingerprint == b.meta.fingerprint != other.meta.fingerprint


# ------------------------------------------------------------------- splits on coded images


def coded_npz(path: Path, n: int, **extra: np.ndarray) -> Path:
    """Image i is constant i (so each example says which it is); labels i % 3."""
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 4, 4)).copy()
    np.savez(path, **(extra or {"x": x, "y": np.arange(n) % 3}))
    return path


def indices(bundle: DataSplits, split: str) -> list[int]:
    s = getattr(bundle, split)
    m = torch.tensor(bundle.meta.mean).view(1, -1, 1, 1)
    sd = torch.tensor(bundle.meta.std).view(1, -1, 1, 1)
    raw = (s.x * sd + m) * bundle.meta.input_scale
    return raw[:, 0, 0, 0].round().long().tolist()


def test_splits_disjoint_deterministic_train_only_stats(tmp_path: Path) -> None:
    cfg = DataConfig(name="npz", path=str(coded_npz(tmp_path / "c.npz", 200)))
    b = load_data(cfg)
    train, val, test = (indices(b, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (144, 16, 40)
    assert sorted(train + val + test) == list(range(200))
    assert b.train.y.tolist() == [i % 3 for i in train]
    assert b.meta.mean[0] == pytest.approx(np.mean(train) / 255, rel=1e-5)  # train only
    assert abs(float(b.val.x.mean())) > 1e-3 or abs(float(b.test.x.mean())) > 1e-3
    assert indices(load_data(cfg), "val") == val
    assert indices(load_data(cfg.model_copy(update={"split_seed": 7})), "val") != val


def test_limit_caps_train_only(tmp_path: Path) -> None:
    cfg = DataConfig(name="npz", path=str(coded_npz(tmp_path / "c.npz", 200)), limit=10)
    b, full = load_data(cfg), load_data(cfg.model_copy(update={"limit": None}))
    assert b.meta.sizes == {"train": 10, "val": 16, "test": 40}
    assert set(indices(b, "train")) <= set(indices(full, "train"))
    assert indices(b, "val") == indices(full, "val")


def test_official_splits_in_npz(tmp_path: Path) -> None:
    x = np.zeros((10, 5, 5, 3), np.uint8)
    path = coded_npz(tmp_path / "o.npz", 0, x_train=x, y_train=np.arange(10) % 2,
                     x_val=x[:3], y_val=[0, 1, 0], x_test=x[:4], y_test=[1, 1, 0, 0])  # fmt: skip
    b = load_data(DataConfig(name="npz", path=str(path), val_fraction=0.5))
    assert b.meta.sizes == {"train": 10, "val": 3, "test": 4}
    assert b.meta.input_shape == (3, 5, 5) and b.meta.input_scale == 255.0


def test_fraction_too_large_names_the_field(tmp_path: Path) -> None:
    path = coded_npz(tmp_path / "s.npz", 3)
    with pytest.raises(DataError, match=r"data\.test_fraction=0\.9"):
        load_data(DataConfig(name="npz", path=str(path), test_fraction=0.9))


# ------------------------------------------------------------------- generic readers


def test_generic_readers_need_data_path(tmp_path: Path) -> None:
    for name in ("npz", "csv", "image-folder"):
        with pytest.raises(DataError, match=r"data\.path"):
            load_data(DataConfig(name=name))
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataConfig(name="csv", path=str(tmp_path / "nope.csv")))


def test_unknown_dataset_suggests_a_name() -> None:
    with pytest.raises(DataError, match="Did you mean 'mnist'"):
        load_data(DataConfig(name="mnsit"))


def test_csv_end_to_end(tmp_path: Path) -> None:
    rows = ["label," + ",".join(f"p{i}" for i in range(9))]
    rows += [f"{c}," + ",".join(str((i * 7 + j) % 256) for j in range(9))
             for i, c in enumerate(["cat", "dog"] * 10)]  # fmt: skip
    (tmp_path / "d.csv").write_text("\n".join(rows))
    b = load_data(DataConfig(name="csv", path=str(tmp_path / "d.csv"), val_fraction=0.2))
    assert b.meta.classes == ["cat", "dog"] and b.meta.input_shape == (1, 3, 3)
    assert b.meta.sizes == {"train": 13, "val": 3, "test": 4}


def test_image_folder_end_to_end(tmp_path: Path) -> None:
    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("RGB", (9 + i, 7), colour).save(tmp_path / label / f"{i}.png")
    cfg = DataConfig(name="image-folder", path=str(tmp_path), image_size=(8, 8),
                     test_fraction=0.2, val_fraction=0.0)  # fmt: skip
    b = load_data(cfg)
    assert b.meta.classes == ["blue", "red"] and b.meta.input_shape == (3, 8, 8)
    assert b.meta.sizes == {"train": 8, "val": 0, "test": 2} and b.meta.input_scale == 255.0
    assert b.meta.mean[1] == pytest.approx(0.0, abs=1e-6)  # no green anywhere
    assert b.meta.files == [str(tmp_path)]
