"""Small synthetic files in each catalog format, for the catalog entries' contract tests.

Each entry registers a writer that puts a few examples in its format into a folder (a few KB,
no download), so every reader is tested on a fresh machine; the real files are tested where
they are present.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

_IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """An array as an IDX file (MNIST's format): magic, big-endian dims, big-endian values."""
    code = _IDX_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(array: np.ndarray, path: Path) -> Path:
    """Write ``array`` as IDX, gzip-compressed when ``path`` ends in .gz."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def random_images(
    n: int, shape: tuple[int, ...], classes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of ``shape`` whose brightness depends on the class, and the labels
    (every class at least once when ``n >= classes``)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    base = (labels * (200 // max(classes - 1, 1))).reshape(-1, *([1] * len(shape)))
    noise = rng.integers(0, 50, size=(n, *shape))
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels.astype(np.int64)
