"""File readers: IDX (MNIST), NPZ, CSV, folders of images, and single images for predict.

Readers return images as (N, C, H, W) arrays in raw units; scaling and normalisation happen
in :func:`deepline.data.load_data`. Every parse error is a ``DataError`` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from deepline.errors import DataError, InputError
from deepline.registry import did_you_mean

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# ---------------------------------------------------------------------------- IDX


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed when it ends in .gz) as an array of its stated shape."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise DataError(
            f"{path} could not be read ({err}); it is truncated or not gzip. "
            "Delete it and fetch it again."
        ) from None
    return parse_idx(data, str(path))


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Parse IDX bytes: 0, 0, a type code, the number of dims, big-endian int32 dims, values."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise DataError(
            f"{name} is not an IDX file (its magic bytes are {data[:4].hex() or 'missing'})"
        )
    ndim, header = data[3], 4 + 4 * data[3]
    if len(data) < header:
        raise DataError(f"{name} is truncated: its IDX header is incomplete")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{name} is truncated or corrupt: its header says shape {dims} ({expected} bytes) "
            f"but it holds {len(data) - header} bytes of values"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------------------- arrays


def to_nchw(x: np.ndarray, name: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4 -> (N, C, H, W)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4):
        return x.transpose(0, 3, 1, 2)
    if x.ndim == 4 and x.shape[1] in (1, 3, 4):
        return x
    raise DataError(
        f"{name}: images must be shaped (N, H, W), (N, H, W, C) or (N, C, H, W) with C "
        f"1, 3 or 4; got {x.shape}"
    )


def infer_scale(x: np.ndarray, name: str) -> float:
    """The raw value meaning 1.0: from the dtype, or for floats from the largest value."""
    if x.dtype == np.uint8:
        return 255.0
    if x.dtype == np.uint16:
        return 65535.0
    peak = float(x.max()) if x.size else 0.0
    if peak <= 1.0:
        return 1.0
    if peak <= 255.0:
        return 255.0
    raise DataError(
        f"{name}: pixel values reach {peak}; give uint8, uint16, or floats in [0, 1] or [0, 255]"
    )


def encode_labels(values: np.ndarray | list[str], name: str) -> tuple[np.ndarray, list[str]]:
    """Labels -> (int64 indices, class names). Integers keep their value; strings sort."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "biuf" or _all_ints(arr):
        ints = arr.astype(np.float64)
        if ints.size and (ints.min() < 0 or not np.all(ints == np.round(ints))):
            raise DataError(f"{name}: integer labels must be 0, 1, 2, ...; found {ints.min()}")
        y = ints.astype(np.int64)
        return y, [str(i) for i in range(int(y.max()) + 1 if y.size else 0)]
    classes = sorted(set(arr.astype(str).tolist()))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in arr.astype(str).tolist()], np.int64), classes


def _all_ints(arr: np.ndarray) -> bool:
    try:
        arr.astype(np.int64)
    except ValueError:
        return False
    return True


def convert_channels(x: ArrayT, channels: int) -> ArrayT:
    """(N, C, H, W) -> (N, channels, H, W): grey <-> RGB with Pillow's luma weights; RGBA
    loses its alpha."""
    if x.shape[1] == 4 and channels != 4:
        x = x[:, :3]
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return x[:, [0, 0, 0]]
    if have == 3 and channels == 1:
        return x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114
    raise DataError(f"cannot convert images with {have} channels to data.channels={channels}")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float (N, C, H, W) -> (N, C, *size), bilinear with antialiasing (as Pillow does)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if len(x) == 0:
        return x.new_zeros((0, x.shape[1], *size))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


# ---------------------------------------------------------------------------- files


_NPZ_PATTERNS = (("x_{}", "y_{}"), ("{}_images", "{}_labels"))


def read_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split name -> (x, y) from ``x``/``y``, ``x_train``/``y_train`` (+ ``_val``, ``_test``)
    or MedMNIST's ``train_images``/``train_labels`` (+ val, test)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path} is not a readable .npz file ({err})") from None
    if "x" in arrays and "y" in arrays:
        return {"train": (arrays["x"], arrays["y"])}
    for xk, yk in _NPZ_PATTERNS:
        splits = {
            s: (arrays[xk.format(s)], arrays[yk.format(s)])
            for s in ("train", "val", "test")
            if xk.format(s) in arrays and yk.format(s) in arrays
        }
        if "train" in splits:
            return splits
    raise DataError(
        f"{path} holds arrays {sorted(arrays)}; the npz reader wants 'x' and 'y', or 'x_train' "
        "and 'y_train' (optionally 'x_val'/'y_val', 'x_test'/'y_test'), or 'train_images' and "
        "'train_labels'"
    )


def read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    """One grey square image per row: (N, 1, S, S) float32 pixels and the raw labels."""
    try:
        with path.open(newline="") as fh:
            rows = [row for row in csv.reader(fh) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path} could not be read as CSV ({err})") from None
    if len(rows) < 2:
        raise DataError(f"{path} needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        hint = did_you_mean(label_column, header)
        raise DataError(
            f"{path} has no column '{label_column}' (data.label_column).{hint} "
            f"Its first columns: {', '.join(header[:8])}"
        )
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path} line {line}: {len(row)} values, but the header has {len(header)}"
            )
    li = header.index(label_column)
    table = np.array(rows[1:], dtype=str)
    labels, cells = table[:, li], np.delete(table, li, axis=1)
    try:
        pixels = cells.astype(np.float32)
    except ValueError:
        line, col = next(
            (r, c) for r, c in np.ndindex(cells.shape) if not _is_number(str(cells[r, c]))
        )
        name = [h for h in header if h != label_column][col]
        raise DataError(
            f"{path} line {line + 2}, column '{name}': {str(cells[line, col])!r} is not a number; "
            f"every column but '{label_column}' must be a pixel value"
        ) from None
    side = math.isqrt(pixels.shape[1])
    if side * side != pixels.shape[1]:
        raise DataError(
            f"{path} has {pixels.shape[1]} pixel columns besides '{label_column}', not a square "
            "number, so the image shape is unknown; the csv reader wants one grey square image "
            "per row (e.g. 784 columns for 28x28)"
        )
    return pixels.reshape(-1, 1, side, side), labels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_image_folder(
    root: Path, channels: int | None, size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A folder with one sub-folder of images per class -> x (N, C, H, W) in [0, 1], y, classes.

    Without ``size`` all images must share one size; without ``channels`` the images are grey
    (1 channel) when every one is grey, else RGB.
    """
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    found = [
        (p, label)
        for label, name in enumerate(classes)
        for p in sorted((root / name).rglob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    ]
    if not found:
        raise DataError(
            f"{root} holds no images in class sub-folders (e.g. {root}/cat/1.png); "
            f"suffixes read: {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    if size is None or channels is None:
        sizes, grey = _peek(p for p, _ in found)
        if size is None and len(sizes) > 1:
            examples = ", ".join(f"{p.name} is {w}x{h}" for (w, h), p in list(sizes.items())[:2])
            raise DataError(f"images in {root} differ in size ({examples}); set data.image_size")
        size = size or next((h, w) for w, h in sizes)
        channels = channels or (1 if grey else 3)
    x = np.stack([load_image(p, channels, size) for p, _ in found])
    return x, np.array([label for _, label in found], np.int64), classes


def _peek(paths: Iterable[Path]) -> tuple[dict[tuple[int, int], Path], bool]:
    """Sizes (W, H) -> an example file, and whether every image is grey (headers only)."""
    sizes: dict[tuple[int, int], Path] = {}
    grey = True
    for p in paths:
        try:
            with Image.open(p) as img:
                sizes.setdefault(img.size, p)
                grey = grey and img.mode in _GREY_MODES
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(f"{p} is not a readable image ({err}); remove it or fix it") from None
    return sizes, grey


# ---------------------------------------------------------------------------- single images


MAX_IMAGE_PIXELS = 25_000_000  # 5000 x 5000: larger images are refused before decoding


def load_image(
    source: str | Path | bytes,
    channels: int,
    size: tuple[int, int],
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """An image file (or its bytes) as float32 (channels, H, W) in [0, 1], resized bilinearly.

    Reads any Pillow format and mode (grey, RGB, RGBA, palette, 16-bit); raises ``InputError``
    naming the file when it is not a readable image, or when it has more than ``max_pixels``
    pixels (decoding is checked before it starts: a small file can hold a huge image).

    >>> load_image("digit.png", channels=1, size=(28, 28)).shape  # doctest: +SKIP
    (1, 28, 28)
    """
    name = "the uploaded image" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise InputError(
                    f"{name} is {width}x{height} pixels, more than the {max_pixels:,} allowed: "
                    "scale it down first"
                )
            img.load()
            planes = _planes(upright(img), channels)
    except FileNotFoundError:
        raise InputError(f"image file {name} does not exist") from None
    except Image.DecompressionBombError:
        raise InputError(f"{name} is too large to decode safely: scale it down first") from None
    except (OSError, ValueError, SyntaxError) as err:
        reason = "unknown format" if isinstance(err, Image.UnidentifiedImageError) else err
        raise InputError(
            f"{name} is not a readable image ({reason}); give a PNG, JPEG, BMP, GIF, TIFF or WebP"
        ) from None
    return resize(torch.from_numpy(planes[None]), size)[0].clamp_(0.0, 1.0).numpy()


_ORIENTATION = 0x0112  # the EXIF tag saying how a camera held the picture
_TURNED = frozenset({5, 6, 7, 8})  # orientations that swap width and height


def upright(img: Image.Image) -> Image.Image:
    """The image as people see it: turned by its EXIF orientation (phone photos), which
    browsers apply too, so masks and boxes land where people look."""
    if img.getexif().get(_ORIENTATION, 1) == 1:
        return img
    return ImageOps.exif_transpose(img)


def image_dimensions(source: str | Path | bytes) -> tuple[int, int]:
    """(H, W) of an image file or its bytes as people see it (EXIF orientation applied), from
    its header only."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        width, height = img.size
        turned = img.getexif().get(_ORIENTATION, 1) in _TURNED
    return (width, height) if turned else (height, width)


def _planes(img: Image.Image, channels: int) -> np.ndarray:
    """(channels, h, w) float32 in [0, 1] at the image's own size."""
    if img.mode.startswith("I"):  # 16-bit grey ('I;16') or 32-bit ints holding 16-bit values
        grey = np.asarray(img, dtype=np.float32) / 65535.0
    elif img.mode == "F":
        grey = np.asarray(img, dtype=np.float32)
    else:
        arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    planes = np.clip(grey, 0.0, 1.0)[None, None]
    return np.ascontiguousarray(convert_channels(planes, channels)[0])


def read_ids(path: Path) -> list[str]:
    """The ids a split list holds, one per line (blank lines skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]
