"""The dataset catalog: what each named dataset is, which files it needs, and how it loads.

A catalog entry is a reader function registered in ``DATASETS`` together with its
:class:`DatasetSpec` and a writer of small sample files for its contract test. Adding a
dataset is one decorated function (docs/extending.md)::

    @register(DatasetSpec(name="my-set", description="...", licence="CC BY 4.0"), sample=...)
    def read_my_set(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepline.config import DataConfig
from deepline.errors import DataError
from deepline.registry import DATASETS, did_you_mean


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: where it comes from and the sha256 it must have.

    With ``member``, ``url`` is a zip archive and the file is that member of it (the archive
    is downloaded once per file into a temporary place; only the member is kept)."""

    name: str
    url: str
    sha256: str
    size: int  # bytes, for progress bars and `deepline data list`
    member: str = ""


def manifest_files(path: Path, source: Callable[[str], tuple[str, str]]) -> tuple[DataFile, ...]:
    """The files a checksum list names, one ``sha256 size name`` line each (datasets of many
    files ship one beside their module); ``source(name)`` is the file's URL and, when that is
    an archive, its member there ("" otherwise)."""
    files = []
    for line in path.read_text(encoding="utf-8").splitlines():
        sha256, size, name = line.split(" ", 2)
        url, member = source(name)
        files.append(DataFile(name, url, sha256, int(size), member=member))
    return tuple(files)


def manifest_digest(path: Path) -> str:
    """One sha256 for a whole checked file set: that of its checksum list."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class DatasetSpec:
    """What `deepline data list/info` shows about a dataset, and where its files live."""

    name: str
    description: str
    licence: str
    folder: str = ""  # sub-folder of a data dir / the cache that holds ``files``
    files: tuple[DataFile, ...] = ()
    classes: tuple[str, ...] = ()  # empty: read from the data
    input_shape: tuple[int, int, int] | None = None  # (C, H, W); None: read from the data
    splits: dict[str, int] = field(default_factory=dict)  # official split sizes
    homepage: str = ""
    citation: str = ""
    needs_path: bool = False  # a generic reader of the user's own files (data.path)
    task: str = "image_classification"  # what a config that names no task trains

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, name: str) -> DataFile:
        for f in self.files:
            if f.name == name:
                return f
        names = [f.name for f in self.files]
        raise DataError(f"dataset '{self.name}' has no file '{name}'; its files: {names}")


@dataclass
class RawSplit:
    """Examples in raw units: ``x`` (N, ...) of any numeric dtype (images (N, C, H, W)), and
    ``y`` int64 (N,) class indices, float32 (N, T) regression targets, or uint8 (N, H, W)
    masks of class indices per pixel (segmentation)."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        y = np.asarray(self.y)
        if y.dtype.kind in "biu" and y.ndim == 3:
            self.y = y.astype(np.uint8)  # masks: per-pixel classes, a byte each
        elif y.dtype.kind in "biu":
            self.y = y.reshape(-1).astype(np.int64)
        else:
            self.y = y.astype(np.float32)
        if self.x.ndim < 1 or len(self.x) != len(self.y):
            raise ValueError(
                f"RawSplit wants x (N, ...) and y (N, ...), got {self.x.shape}, {self.y.shape}"
            )

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class RawDataset:
    """What a loader of images returns; `load_data` splits, scales and normalises it.

    ``val``/``test`` are the dataset's official splits, or None to carve them from ``train``.
    ``sources`` are the sha256 of the files read; when empty the fingerprint hashes the arrays.
    """

    train: RawSplit
    classes: list[str]
    input_scale: float  # the raw value that means 1.0 (255 for 8-bit pixels)
    val: RawSplit | None = None
    test: RawSplit | None = None
    files: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass
class DataSample:
    """Small synthetic files in a catalog entry's format, and the config overrides that read
    them: what the entry's contract test loads (``tests/contracts``), with no download."""

    files: dict[str, Path] = field(default_factory=dict)  # as the entry's reader receives them
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"path": ...} for data.path


# An entry's reader: the config and its verified files (name -> path) -> raw images for
# ``load_data`` to split and normalise, or finished ``DataSplits`` (text, sequences, tables).
Reader = Callable[[DataConfig, dict[str, Path]], Any]
SampleWriter = Callable[[Path], DataSample]


def register(spec: DatasetSpec, sample: SampleWriter) -> Callable[[Reader], Reader]:
    """Decorator: add a reader to the catalog under ``spec.name``, with the function that
    writes a small sample in its format (an entry cannot exist without its contract test)."""
    return DATASETS.register(spec.name, spec=spec, sample=sample)


def dataset_names() -> list[str]:
    return DATASETS.names()


def get_spec(name: str) -> DatasetSpec:
    """The catalog entry ``name``; a DataError naming ``data.name`` and close names otherwise."""
    _check_known(name)
    spec: DatasetSpec = DATASETS.meta(name)["spec"]
    return spec


def get_reader(name: str) -> Reader:
    _check_known(name)
    reader: Reader = DATASETS.get(name)
    return reader


def _check_known(name: str) -> None:
    if name not in DATASETS:
        raise DataError(
            f"data.name: unknown dataset '{name}'. Known: {', '.join(DATASETS.names())}."
            f"{did_you_mean(name, DATASETS.names())} (see `deepline data list`)"
        )


def configured_size(cfg: DataConfig, default: tuple[int, int]) -> tuple[int, int]:
    """``data.image_size`` as (H, W), or the entry's ``default`` when the config sets none."""
    return (int(cfg.image_size[0]), int(cfg.image_size[1])) if cfg.image_size else default
