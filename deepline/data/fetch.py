"""Find, verify and download dataset files.

A file ``F`` of a dataset stored in folder ``D`` is looked up, in order, at

1. ``<data_dir>/D/F`` (``data.data_dir`` or ``--data-dir``),
2. ``$DEEPLINE_DATA_DIR/D/F``,
3. ``<cache>/D/F`` with ``<cache>`` = ``$DEEPLINE_CACHE_DIR`` or ``~/.cache/deepline``,

and only then downloaded into the cache, from ``$DEEPLINE_MIRROR/D/F`` when that variable is
set (a mirror laid out like a data dir), else from the catalog URL. Every file is checked
against the catalog's sha256 before use.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from deepline.data.catalog import DataFile, DatasetSpec
from deepline.errors import DataError

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0

# sha256 results keyed by (path, size, mtime_ns): loading MNIST twice hashes 10 MB once.
_HASHES: dict[tuple[str, int, int], str] = {}


def cache_root() -> Path:
    return Path(os.environ.get("DEEPLINE_CACHE_DIR") or Path.home() / ".cache" / "deepline")


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The roots searched for dataset folders, in order; the cache comes last."""
    roots = [data_dir, os.environ.get("DEEPLINE_DATA_DIR")]
    return [Path(r).expanduser() for r in roots if r] + [cache_root()]


def candidates(spec: DatasetSpec, file: DataFile, data_dir: str | Path | None = None) -> list[Path]:
    return [root / spec.folder / file.name for root in search_dirs(data_dir)]


def locate(spec: DatasetSpec, file: DataFile, data_dir: str | Path | None = None) -> Path | None:
    """The first place the file exists (not yet verified), or None."""
    return next((p for p in candidates(spec, file, data_dir) if p.is_file()), None)


def mirror_base() -> str | None:
    """``$DEEPLINE_MIRROR``: a base URL laid out like a data dir, used instead of catalog URLs."""
    return os.environ.get("DEEPLINE_MIRROR") or None


def download_url(spec: DatasetSpec, file: DataFile) -> str:
    mirror = mirror_base()
    return f"{mirror.rstrip('/')}/{spec.folder}/{file.name}" if mirror else file.url


def _archive_member(file: DataFile) -> str | None:
    """The member to take out of the downloaded archive (a mirror holds files themselves)."""
    if mirror_base() is not None:
        return None
    return file.member or None


def file_sha256(path: Path) -> str:
    """sha256 hex of a file, remembered until its size or modification time changes."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


@dataclass
class FileStatus:
    file: DataFile
    status: Literal["OK", "MISSING", "CORRUPT"]
    path: Path | None
    actual_sha256: str = ""


def check_file(spec: DatasetSpec, file: DataFile, data_dir: str | Path | None = None) -> FileStatus:
    """Locate and hash one file, without raising or downloading (for `deepline data verify`)."""
    path = locate(spec, file, data_dir)
    if path is None:
        return FileStatus(file, "MISSING", None)
    actual = file_sha256(path)
    return FileStatus(file, "OK" if actual == file.sha256 else "CORRUPT", path, actual)


def ensure_file(
    spec: DatasetSpec, file: DataFile | str, data_dir: str | Path | None = None
) -> Path:
    """The verified local path of a dataset file, downloading it into the cache if needed.

    >>> from deepline.data import get_spec
    >>> ensure_file(get_spec("mnist"), "t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
    PosixPath('/home/me/.cache/deepline/mnist/t10k-labels-idx1-ubyte.gz')
    """
    if isinstance(file, str):
        file = spec.file(file)
    found = check_file(spec, file, data_dir)
    if found.status == "CORRUPT":
        raise DataError(
            f"{found.path} is corrupt: its sha256 is {found.actual_sha256}, expected "
            f"{file.sha256}. Delete it and run `deepline data fetch {spec.name}` "
            f"(or copy a good copy there)."
        )
    if found.path is not None:
        return found.path
    dest = cache_root() / spec.folder / file.name
    url = download_url(spec, file)
    try:
        download(url, dest, file.sha256, member=_archive_member(file))
    except (
        OSError,
        ValueError,
        http.client.HTTPException,
        zipfile.BadZipFile,
    ) as err:  # URLError: an OSError
        looked = ", ".join(str(p) for p in candidates(spec, file, data_dir))
        raise DataError(
            f"dataset file {file.name} of '{spec.name}' was not found (looked in: {looked}) "
            f"and downloading {url} failed ({err}). Put the file (sha256 {file.sha256}) in "
            f"one of those places, set DEEPLINE_DATA_DIR, or run `deepline data fetch "
            f"{spec.name}` where there is network."
        ) from None
    return dest


def ensure_files(spec: DatasetSpec, data_dir: str | Path | None = None) -> dict[str, Path]:
    """Every file of a dataset, verified (and downloaded when missing): name -> path. The
    missing members of one archive come from a single download of it."""
    archives: dict[str, list[DataFile]] = {}
    for file in spec.files:
        member = _archive_member(file)
        if member and locate(spec, file, data_dir) is None:
            archives.setdefault(download_url(spec, file), []).append(file)
    for url, files in archives.items():
        if len(files) > 1:
            _fetch_members(spec, url, files, data_dir)
    return {f.name: ensure_file(spec, f, data_dir) for f in spec.files}


def _fetch_members(
    spec: DatasetSpec, url: str, files: list[DataFile], data_dir: str | Path | None
) -> None:
    """Download the archive at ``url`` once and keep the members ``files`` name, each checked."""
    root = cache_root() / spec.folder
    root.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".archive.", suffix=".zip", dir=root)
    os.close(fd)
    archive = Path(name)
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp, archive.open("wb") as out:
            _copy_hashing(resp, out, int(resp.headers.get("Content-Length") or 0), url)
        with zipfile.ZipFile(archive) as zf:
            for file in files:
                _extract_checked(zf, file, root / file.name, url)
    except (OSError, ValueError, http.client.HTTPException, zipfile.BadZipFile) as err:
        looked = ", ".join(str(p.parent) for p in candidates(spec, files[0], data_dir))
        raise DataError(
            f"{len(files)} files of '{spec.name}' were not found (looked in: {looked}) and "
            f"downloading {url} failed ({err}). Set DEEPLINE_DATA_DIR to a folder holding "
            f"{spec.folder}/, or run `deepline data fetch {spec.name}` where there is network."
        ) from None
    finally:
        archive.unlink(missing_ok=True)


def _extract_checked(zf: zipfile.ZipFile, file: DataFile, dest: Path, url: str) -> None:
    """``file``'s member of the open archive to ``dest`` through a temporary name, hashed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        try:
            info = zf.getinfo(file.member)
        except KeyError:
            raise DataError(f"the archive {url} has no member {file.member}") from None
        with zf.open(info) as src, tmp.open("wb") as out:
            actual = _copy_hashing(src, out, info.file_size, dest.name)
        if actual != file.sha256:
            raise DataError(
                f"{file.member} in {url} is corrupt: its sha256 is {actual}, expected "
                f"{file.sha256}. Nothing was saved to {dest}."
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def download(url: str, dest: Path, sha256: str, member: str | None = None) -> Path:
    """Download ``url`` to ``dest`` through a temporary name, checking its sha256; with
    ``member``, ``url`` is a zip archive and ``dest`` gets that member of it.

    Nothing is left at ``dest`` (or beside it) when the transfer fails or the hash differs.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)  # reopened by name below
    tmp = Path(tmp_name)
    archive = tmp.with_suffix(".zip")
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            with (archive if member else tmp).open("wb") as out:
                actual = _copy_hashing(resp, out, total, dest.name)
        if member:
            with zipfile.ZipFile(archive) as zf, zf.open(member) as src, tmp.open("wb") as out:
                actual = _copy_hashing(src, out, zf.getinfo(member).file_size, dest.name)
        if actual != sha256:
            raise DataError(
                f"the download of {url} is corrupt: its sha256 is {actual}, expected {sha256}. "
                f"Nothing was saved to {dest}; try again, or fetch the file by hand."
            )
        tmp.replace(dest)  # atomic: a reader never sees half a file
    except KeyError:
        raise DataError(f"the archive {url} has no member {member}") from None
    finally:
        tmp.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
    return dest


def _copy_hashing(src: IO[bytes], out: IO[bytes], total: int, label: str) -> str:
    digest = hashlib.sha256()
    with _progress(total, label) as advance:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            advance(len(chunk))
    return digest.hexdigest()


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr when it is a terminal (not in logs or CI)."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"downloading {label}", total=total or None)
        yield lambda n: bar.update(task, advance=n)
