"""Fixtures of the data tests: the real datasets, an isolated cache, and a local HTTP mirror.

Every test runs with an empty cache (``DEEPLINE_CACHE_DIR``) and a mirror on a closed port
(``DEEPLINE_MIRROR``), so nothing reads ``~/.cache`` or reaches the network by accident.
"""

from __future__ import annotations

import functools
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

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
