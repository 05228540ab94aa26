"""Fixtures of the data tests: the real datasets, a small synthetic dataset, an isolated cache,
and a local HTTP mirror.

Every test runs with an empty cache (``DEEPLINE_CACHE_DIR``) and a mirror on a closed port
(``DEEPLINE_MIRROR``), so nothing reads ``~/.cache`` or reaches the network by accident.
Tests of lookup, checksums and downloads use ``synthetic`` (files written here, with a catalog
spec whose sha256 are computed from their bytes), so they run without the real datasets; only
tests about a real dataset's own bytes use ``shared_data``/``data_env``/``copy_real``.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deepline.config import DataConfig
from deepline.data import DataFile, DataSample, DatasetSpec
from deepline.data.catalog import RawDataset, RawSplit, register
from deepline.data.readers import read_idx
from deepline.data.samples import random_images, write_idx
from deepline.registry import DATASETS

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def closed_port_url() -> str:
    """An http URL on a loopback port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, no DEEPLINE_DATA_DIR, and no reachable mirror."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEEPLINE_CACHE_DIR", str(cache))
    monkeypatch.setenv("DEEPLINE_MIRROR", closed_port_url())
    monkeypatch.delenv("DEEPLINE_DATA_DIR", raising=False)
    return cache


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (the real datasets); skips when absent."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (clone them beside the repo)")
    return SHARED_DATA


@pytest.fixture
def data_env(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEEPLINE_DATA_DIR", str(shared_data))
    return shared_data


@pytest.fixture
def copy_real(shared_data: Path) -> Callable[[str, str, Path], Path]:
    """``copy_real(folder, name, root)`` copies a real file to ``root/folder/name``."""

    def copy(folder: str, name: str, root: Path) -> Path:
        dest = root / folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / folder / name, dest)
        return dest

    return copy


@pytest.fixture
def flip_byte() -> Callable[..., Path]:
    """``flip_byte(path, offset=100)`` corrupts a file in place, keeping its size."""

    def flip(path: Path, offset: int = 100) -> Path:
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        return path

    return flip


@dataclass
class Mirror:
    root: Path  # files served: root/<folder>/<file>
    url: str


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    """A real HTTP server on 127.0.0.1 serving an empty folder, set as DEEPLINE_MIRROR."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("DEEPLINE_MIRROR", url)
    try:
        yield Mirror(root, url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ---------------------------------------------------------------------------- synthetic dataset

SYNTH_IMAGES = "synth-images-idx3-ubyte.gz"
SYNTH_LABELS = "synth-labels-idx1-ubyte.gz"
SYNTH_CLASSES = ("a", "b", "c")
SYNTH_URL = "https://deepline.invalid/synth/"  # never resolves; DEEPLINE_MIRROR replaces it


@dataclass
class Synthetic:
    """A dataset that exists only in the tests: gzipped IDX files of a few 8x8 images, and a
    catalog spec (folder ``synth``) whose sha256 and sizes are those of the bytes written."""

    spec: DatasetSpec
    blobs: dict[str, bytes]  # file name -> its good bytes

    def sha(self, name: str) -> str:
        return self.spec.file(name).sha256

    def put(self, root: Path, name: str = SYNTH_IMAGES, data: bytes | None = None) -> Path:
        """Write ``data`` (default: the good bytes) to ``root/<folder>/<name>``."""
        dest = root / self.spec.folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.blobs[name] if data is None else data)
        return dest

    def put_all(self, root: Path) -> dict[str, Path]:
        return {name: self.put(root, name) for name in self.blobs}


def read_synth(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    """The synthetic entry's reader (what ``load_data`` calls once the files are verified)."""
    x, y = read_idx(files[SYNTH_IMAGES]), read_idx(files[SYNTH_LABELS])
    return RawDataset(
        RawSplit(x[:, None], y), list(SYNTH_CLASSES), 255.0, files=[str(p) for p in files.values()]
    )


@pytest.fixture
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    src = tmp_path_factory.mktemp("synthetic")
    x, y = random_images(60, (8, 8), classes=len(SYNTH_CLASSES))
    paths = [
        write_idx(x, src / SYNTH_IMAGES),
        write_idx(y.astype(np.uint8), src / SYNTH_LABELS),
    ]
    blobs = {p.name: p.read_bytes() for p in paths}
    files = tuple(
        DataFile(name, f"{SYNTH_URL}{name}", hashlib.sha256(data).hexdigest(), len(data))
        for name, data in blobs.items()
    )
    spec = DatasetSpec(
        name="synthetic-digits",
        description="a few 8x8 test images written by tests/data/conftest.py",
        licence="CC0",
        folder="synth",
        files=files,
        classes=SYNTH_CLASSES,
        input_shape=(1, 8, 8),
        splits={"train": 60},
    )
    return Synthetic(spec, blobs)


@pytest.fixture
def registered(synthetic: Synthetic) -> Iterator[Synthetic]:
    """``synthetic`` added to the catalog for one test, so the CLI and ``load_data`` find it
    by name; removed afterwards."""
    register(synthetic.spec, sample=lambda folder: DataSample())(read_synth)
    try:
        yield synthetic
    finally:
        DATASETS.unregister(synthetic.spec.name)
