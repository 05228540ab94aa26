"""File lookup, checksums and downloads, against the real files and a real local HTTP server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from deepline.config import DataConfig
from deepline.data import ensure_file, get_spec, load_data
from deepline.data import fetch as fetch_mod
from deepline.errors import DataError

LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST = get_spec("mnist")
EXPECTED = MNIST.file(LABELS).sha256


def test_catalog_urls_and_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPLINE_MIRROR")
    assert fetch_mod.download_url(MNIST, MNIST.file(LABELS)) == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/" + LABELS
    )
    monkeypatch.setenv("DEEPLINE_DATA_DIR", str(tmp_path / "env"))
    roots = fetch_mod.search_dirs(tmp_path / "arg")
    assert roots == [tmp_path / "arg", tmp_path / "env", fetch_mod.cache_root()]


def test_data_dir_comes_before_cache(data_env: Path, isolated: Path, copy_real: Any) -> None:
    copy_real("mnist", LABELS, isolated)  # also in the cache
    assert ensure_file(MNIST, LABELS) == data_env / "mnist" / LABELS


def test_download_from_mirror_into_cache(mirror: Any, isolated: Path, copy_real: Any) -> None:
    copy_real("mnist", LABELS, mirror.root)
    path = ensure_file(MNIST, LABELS)
    assert path == isolated / "mnist" / LABELS
    assert hashlib.sha256(path.read_bytes()).hexdigest() == EXPECTED
    assert sorted(p.name for p in path.parent.iterdir()) == [LABELS]  # no temporary left
    (mirror.root / "mnist" / LABELS).unlink()
    assert ensure_file(MNIST, LABELS) == path  # now from the cache, not the mirror


def test_corrupt_download_leaves_nothing(
    mirror: Any, isolated: Path, copy_real: Any, flip_byte: Any
) -> None:
    flip_byte(copy_real("mnist", LABELS, mirror.root))
    with pytest.raises(DataError) as err:
        ensure_file(MNIST, LABELS)
    assert EXPECTED in str(err.value) and "corrupt" in str(err.value)
    folder = isolated / "mnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_corrupt_local_file_is_named(tmp_path: Path, copy_real: Any, flip_byte: Any) -> None:
    bad = flip_byte(copy_real("mnist", LABELS, tmp_path / "data"))
    with pytest.raises(DataError) as err:
        ensure_file(MNIST, LABELS, data_dir=tmp_path / "data")
    message = str(err.value)
    assert str(bad) in message and EXPECTED in message
    assert hashlib.sha256(bad.read_bytes()).hexdigest() in message
    assert "deepline data fetch mnist" in message


def test_corrupt_file_fails_load_data(tmp_path: Path, copy_real: Any, flip_byte: Any) -> None:
    flip_byte(copy_real("medmnist", "breastmnist.npz", tmp_path), offset=5000)
    with pytest.raises(DataError, match=r"breastmnist\.npz"):
        load_data(DataConfig(name="breastmnist", data_dir=str(tmp_path)))


def test_missing_file_without_network(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        ensure_file(MNIST, LABELS, data_dir=tmp_path / "empty")
    message = str(err.value)
    assert LABELS in message and EXPECTED in message
    assert str(tmp_path / "empty" / "mnist" / LABELS) in message  # the places looked
    assert os.environ["DEEPLINE_MIRROR"] in message  # the URL tried


def test_hashes_are_cached_until_the_file_changes(
    tmp_path: Path, copy_real: Any, flip_byte: Any
) -> None:
    path = copy_real("mnist", LABELS, tmp_path)
    assert fetch_mod.file_sha256(path) == EXPECTED
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    assert fetch_mod._HASHES[key] == EXPECTED  # a second load reads this, not the file
    flip_byte(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert fetch_mod.file_sha256(path) != EXPECTED
