"""Readers on small files written here, and parse errors on damaged ones."""

from __future__ import annotations

import gzip
import io
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from deepline.data.readers import (
    encode_labels,
    load_image,
    parse_idx,
    read_csv,
    read_idx,
    read_image_folder,
    read_npz,
    to_nchw,
)
from deepline.data.samples import random_images, write_idx
from deepline.errors import DataError, InputError


def idx_bytes(a: np.ndarray) -> bytes:
    return b"\0\0\x08" + bytes([a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


# ---------------------------------------------------------------------------- IDX


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple)))
def test_idx_round_trip(a: np.ndarray) -> None:
    out = parse_idx(idx_bytes(a), "x.idx")
    assert out.shape == a.shape and np.array_equal(out, a)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=64))
def test_idx_parser_rejects_garbage_with_data_error(data: bytes) -> None:
    try:
        parse_idx(data, "junk.idx")
    except DataError as err:
        assert "junk.idx" in str(err)


def test_idx_truncated_values(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-5]
    with pytest.raises(DataError, match=r"junk.idx is truncated"):
        parse_idx(data, "junk.idx")


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x01\x02\x08\x01" + bytes(8)))
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    images, _ = random_images(50, (28, 28), classes=10)
    path = write_idx(images, tmp_path / "t10k-images-idx3-ubyte.gz")
    assert read_idx(path).shape == (50, 28, 28)  # whole, it reads
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*truncated"):
        read_idx(path)


# ---------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    "shape", [(5, 6, 7), (5, 6, 7, 1), (5, 6, 7, 3), (5, 1, 6, 7), (5, 3, 6, 7)]
)
def test_to_nchw_layouts(shape: tuple[int, ...]) -> None:
    out = to_nchw(np.zeros(shape, np.uint8), "x")
    assert out.shape[0] == 5 and out.shape[2:] == (6, 7)


def test_to_nchw_rejects_unknown_layout() -> None:
    with pytest.raises(DataError, match=r"arr\.npz"):
        to_nchw(np.zeros((5, 6, 7, 8)), "arr.npz")


def test_encode_labels_ints_and_strings() -> None:
    y, classes = encode_labels(np.array([2, 0, 2]), "y")
    assert y.tolist() == [2, 0, 2] and classes == ["0", "1", "2"]
    y, classes = encode_labels(["dog", "cat", "dog"], "y")
    assert y.tolist() == [1, 0, 1] and classes == ["cat", "dog"]
    with pytest.raises(DataError):
        encode_labels(np.array([-1, 0]), "y")


# ---------------------------------------------------------------------------- npz / csv


def test_npz_key_layouts(tmp_path: Path) -> None:
    x, y = np.zeros((4, 5, 5), np.uint8), np.arange(4)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    assert set(read_npz(tmp_path / "a.npz")) == {"train"}
    assert set(read_npz(tmp_path / "b.npz")) == {"train", "test"}
    np.savez(tmp_path / "c.npz", images=x)
    with pytest.raises(DataError, match=r"c\.npz.*'images'"):
        read_npz(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"d\.npz"):
        read_npz(tmp_path / "d.npz")


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def test_csv_square_images(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ["label", "p0", "p1", "p2", "p3"],
                     [[1, 0, 255, 0, 255], [0, 10, 20, 30, 40]])  # fmt: skip
    pixels, labels = read_csv(path, "label")
    assert pixels.shape == (2, 1, 2, 2) and pixels[1, 0, 1, 1] == 40
    assert labels.tolist() == ["1", "0"]


def test_csv_errors_name_file_and_field(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ["label", "a", "b", "c"], [[1, 0, 1, 2]])
    with pytest.raises(DataError, match=r"3 pixel columns.*not a square"):
        read_csv(path, "label")
    with pytest.raises(DataError, match=r"no column 'labels' \(data\.label_column\)"):
        read_csv(path, "labels")
    path = write_csv(tmp_path / "e.csv", ["label", "a"], [[1, "x"]])
    with pytest.raises(DataError, match=r"e\.csv line 2, column 'a': 'x' is not a number"):
        read_csv(path, "label")


# ---------------------------------------------------------------------------- images


def write_image(path: Path, mode: str, size: tuple[int, int], value: int = 204) -> Path:
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    img = Image.fromarray(arr).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.mark.parametrize(
    ("name", "mode"),
    [("a.png", "L"), ("b.png", "RGB"), ("c.png", "RGBA"), ("d.png", "P"), ("e.jpg", "RGB")],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_load_image_modes_and_odd_sizes(
    tmp_path: Path, name: str, mode: str, channels: int
) -> None:
    path = write_image(tmp_path / name, mode, size=(37, 23))
    out = load_image(path, channels, (28, 28))
    assert out.shape == (channels, 28, 28) and out.dtype == np.float32
    assert np.allclose(out, 204 / 255, atol=0.02)  # flat stays flat (204: in the web palette)


def test_load_image_16_bit_and_bytes(tmp_path: Path) -> None:
    img = Image.fromarray(np.full((9, 13), 65535 // 2, np.uint16))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = load_image(buf.getvalue(), 3, (8, 8))
    assert out.shape == (3, 8, 8) and np.allclose(out, 0.5, atol=0.01)


def test_load_image_rejects_non_images(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(InputError, match=r"notes\.png"):
        load_image(path, 1, (28, 28))
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "missing.png", 1, (28, 28))
    with pytest.raises(InputError, match="uploaded image is not a readable image"):
        load_image(b"\x89PNG broken", 1, (28, 28))


def test_image_folder(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "dog" / f"{i}.png", "L", (10, 12), value=50)
        write_image(tmp_path / "cat" / f"{i}.jpg", "L", (10, 12), value=150)
    (tmp_path / "cat" / "readme.txt").write_text("ignored")
    x, y, classes = read_image_folder(tmp_path, None, None)
    assert classes == ["cat", "dog"] and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert x.shape == (6, 1, 12, 10)  # grey images -> 1 channel, (H, W) = (12, 10)
    x, _, _ = read_image_folder(tmp_path, 3, (8, 8))
    assert x.shape == (6, 3, 8, 8)


def test_image_folder_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "1.png", "RGB", (10, 10))
    write_image(tmp_path / "b" / "1.png", "RGB", (12, 10))
    with pytest.raises(DataError, match=r"data\.image_size"):
        read_image_folder(tmp_path, None, None)
    x, _, _ = read_image_folder(tmp_path, None, (6, 6))
    assert x.shape == (2, 3, 6, 6)
