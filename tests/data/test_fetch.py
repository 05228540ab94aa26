"""File lookup, checksums and downloads, against small synthetic files and a real local HTTP
server: the ``synthetic`` spec's sha256 are those of the bytes written here, so none of these
tests needs the real datasets (the catalog's own checksums are tested in test_real_datasets)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deepline.config import DataConfig
from deepline.data import check_file, ensure_file, ensure_files, get_spec, load_data
from deepline.data import fetch as fetch_mod
from deepline.errors import DataError
from tests.data.conftest import SYNTH_IMAGES, SYNTH_LABELS, Synthetic

LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST = get_spec("mnist")
EXPECTED = MNIST.file(LABELS).sha256


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_catalog_urls_and_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPLINE_MIRROR")
    assert fetch_mod.download_url(MNIST, MNIST.file(LABELS)) == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/" + LABELS
    )
    monkeypatch.setenv("DEEPLINE_DATA_DIR", str(tmp_path / "env"))
    roots = fetch_mod.search_dirs(tmp_path / "arg")
    assert roots == [tmp_path / "arg", tmp_path / "env", fetch_mod.cache_root()]
    monkeypatch.setenv("DEEPLINE_MIRROR", "http://mirror.invalid/base/")
    assert fetch_mod.download_url(MNIST, MNIST.file(LABELS)) == (
        "http://mirror.invalid/base/mnist/" + LABELS
    )


def test_lookup_order_data_dir_env_then_cache(
    synthetic: Synthetic, tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, file = synthetic.spec, synthetic.spec.file(SYNTH_IMAGES)
    env, arg = tmp_path / "env", tmp_path / "arg"
    monkeypatch.setenv("DEEPLINE_DATA_DIR", str(env))
    assert fetch_mod.locate(spec, file, arg) is None
    for root in (isolated, env, arg):  # each new copy comes before the ones already there
        synthetic.put(root)
        assert fetch_mod.locate(spec, file, arg) == root / "synth" / SYNTH_IMAGES
        assert ensure_file(spec, SYNTH_IMAGES, data_dir=arg) == root / "synth" / SYNTH_IMAGES


def test_data_dir_comes_before_cache(
    synthetic: Synthetic, tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("DEEPLINE_DATA_DIR", str(data))
    synthetic.put_all(data)
    synthetic.put_all(isolated)  # also in the cache
    assert ensure_file(synthetic.spec, SYNTH_LABELS) == data / "synth" / SYNTH_LABELS
    assert ensure_files(synthetic.spec) == {n: data / "synth" / n for n in synthetic.blobs}


def test_check_file_statuses(synthetic: Synthetic, tmp_path: Path, flip_byte: Any) -> None:
    spec, file = synthetic.spec, synthetic.spec.file(SYNTH_IMAGES)
    assert check_file(spec, file, tmp_path).status == "MISSING"
    good = synthetic.put(tmp_path)
    status = check_file(spec, file, tmp_path)
    assert (status.status, status.path, status.actual_sha256) == ("OK", good, file.sha256)
    flip_byte(good)
    status = check_file(spec, file, tmp_path)
    assert (status.status, status.path, status.actual_sha256) == ("CORRUPT", good, sha256(good))


def test_download_from_mirror_into_cache(synthetic: Synthetic, mirror: Any, isolated: Path) -> None:
    synthetic.put_all(mirror.root)
    path = ensure_file(synthetic.spec, SYNTH_IMAGES)
    assert path == isolated / "synth" / SYNTH_IMAGES
    assert sha256(path) == synthetic.sha(SYNTH_IMAGES)
    assert sorted(p.name for p in path.parent.iterdir()) == [SYNTH_IMAGES]  # no temporary left
    (mirror.root / "synth" / SYNTH_IMAGES).unlink()
    assert ensure_file(synthetic.spec, SYNTH_IMAGES) == path  # now from the cache, not the mirror
    paths = ensure_files(synthetic.spec)  # the one still missing comes from the mirror
    assert paths == {n: isolated / "synth" / n for n in synthetic.blobs}
    assert {n: p.read_bytes() for n, p in paths.items()} == synthetic.blobs


def test_load_data_downloads_and_reads(registered: Synthetic, mirror: Any, isolated: Path) -> None:
    registered.put_all(mirror.root)
    data = load_data(DataConfig(name=registered.spec.name, val_fraction=0.2, test_fraction=0.2))
    assert data.meta.input_shape == (1, 8, 8) and sum(data.meta.sizes.values()) == 60
    assert sorted(p.name for p in (isolated / "synth").iterdir()) == sorted(registered.blobs)


def test_corrupt_download_leaves_nothing(
    synthetic: Synthetic, mirror: Any, isolated: Path, flip_byte: Any
) -> None:
    expected = synthetic.sha(SYNTH_IMAGES)
    flip_byte(synthetic.put(mirror.root))
    with pytest.raises(DataError) as err:
        ensure_file(synthetic.spec, SYNTH_IMAGES)
    assert expected in str(err.value) and "corrupt" in str(err.value)
    folder = isolated / "synth"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_failed_download_leaves_nothing(synthetic: Synthetic, mirror: Any, isolated: Path) -> None:
    (mirror.root / "synth").mkdir()  # the mirror answers, but 404 for the file
    with pytest.raises(DataError) as err:
        ensure_file(synthetic.spec, SYNTH_IMAGES)
    message = str(err.value)
    assert f"{mirror.url}/synth/{SYNTH_IMAGES}" in message and "404" in message
    assert synthetic.sha(SYNTH_IMAGES) in message
    folder = isolated / "synth"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_download_checks_sha256(synthetic: Synthetic, mirror: Any, tmp_path: Path) -> None:
    synthetic.put(mirror.root)
    url, dest = f"{mirror.url}/synth/{SYNTH_IMAGES}", tmp_path / "out" / "file.gz"
    with pytest.raises(DataError, match="corrupt"):
        fetch_mod.download(url, dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []
    assert fetch_mod.download(url, dest, synthetic.sha(SYNTH_IMAGES)) == dest
    assert dest.read_bytes() == synthetic.blobs[SYNTH_IMAGES]
    assert list(dest.parent.iterdir()) == [dest]


def test_corrupt_local_file_is_named(synthetic: Synthetic, tmp_path: Path, flip_byte: Any) -> None:
    bad = flip_byte(synthetic.put(tmp_path / "data"))
    with pytest.raises(DataError) as err:
        ensure_file(synthetic.spec, SYNTH_IMAGES, data_dir=tmp_path / "data")
    message = str(err.value)
    assert str(bad) in message and synthetic.sha(SYNTH_IMAGES) in message
    assert sha256(bad) in message
    assert "deepline data fetch synthetic-digits" in message


def test_corrupt_file_fails_load_data(tmp_path: Path) -> None:
    """A well-formed npz that is not the catalog's breastmnist.npz: rejected by its sha256."""
    folder = tmp_path / "medmnist"
    folder.mkdir()
    with (folder / "breastmnist.npz").open("wb") as fh:
        np.savez(fh, x=np.zeros((4, 28, 28), np.uint8), y=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"breastmnist\.npz.*corrupt"):
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
    synthetic: Synthetic, tmp_path: Path, flip_byte: Any
) -> None:
    expected = synthetic.sha(SYNTH_IMAGES)
    path = synthetic.put(tmp_path)
    assert fetch_mod.file_sha256(path) == expected
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    assert fetch_mod._HASHES[key] == expected  # a second load reads this, not the file
    flip_byte(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert fetch_mod.file_sha256(path) != expected


def test_members_of_one_archive_come_from_one_download(
    mirror: Any, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset of many files inside one zip downloads the zip once, keeps each member
    checked by its own sha256, and names a corrupt member."""
    import io
    import urllib.request
    import zipfile

    from deepline.data.catalog import DataFile, DatasetSpec

    members = {f"set/images/{i}.txt": f"picture {i}\n".encode() for i in range(5)}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    (mirror.root / "set.zip").write_bytes(archive.getvalue())
    monkeypatch.delenv("DEEPLINE_MIRROR")  # the catalog URL itself, pointed here
    url = f"{mirror.url}/set.zip"
    files = tuple(DataFile(n, url, hashlib.sha256(p).hexdigest(), len(p), member=n)
                  for n, p in members.items())  # fmt: skip
    spec = DatasetSpec(name="many", description="", licence="", folder="many", files=files)
    opened: list[str] = []
    real = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda u, **k: opened.append(u) or real(u, **k))  # fmt: skip
    found = ensure_files(spec)
    assert opened == [url]  # one download for five files
    assert {n: p.read_bytes() for n, p in found.items()} == members
    assert sorted(p.name for p in (isolated / "many").rglob("*") if p.is_file()) == sorted(
        f"{i}.txt" for i in range(5)
    )  # nothing else left behind
    for path in found.values():
        path.unlink()
    bad = (DataFile(files[0].name, url, "0" * 64, 1, member=files[0].name), *files[1:])
    with pytest.raises(DataError, match=r"set/images/0\.txt in .*set\.zip is corrupt"):
        ensure_files(DatasetSpec(name="many", description="", licence="",
                                       folder="many", files=bad))  # fmt: skip
    assert not (isolated / "many" / "set" / "images" / "0.txt").exists()
