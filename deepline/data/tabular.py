"""Tables of named columns (CSV, Parquet): numeric and categorical columns, a target, and
sensitive columns that fairness reports break down by.

The schema is declared (``data.columns``) or inferred (a column whose every present value is a
number is numeric, any other categorical) and fitted on the training split only, as TFX
Transform does: each numeric column's mean and standard deviation, each categorical column's
vocabulary (by frequency). The bundle carries the fitted schema, so serving encodes rows exactly
as training did. A model input is float32 (N, F), one value per column in schema order:
numeric columns standardised (a missing value becomes the mean, 0), categorical columns as the
index of their value in the vocabulary plus one (0: missing or never seen in training).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepline.config import DataConfig
from deepline.data.catalog import RawDataset, RawSplit
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.data.splitting import split_dataset
from deepline.errors import DataError, InputError

SPLIT_SETTINGS = {"val_fraction", "test_fraction", "split_seed", "limit", "normalize", "columns",
                  "sensitive", "sensitive_input"}  # fmt: skip
MISSING = frozenset({"", "?", "na", "n/a", "nan", "null", "none"})  # compared lower-cased
NUMERIC, CATEGORICAL = "numeric", "categorical"


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING


@dataclass
class Column:
    """One model input column and what training fitted for it."""

    name: str
    kind: str  # NUMERIC or CATEGORICAL
    mean: float = 0.0
    std: float = 1.0
    vocabulary: list[str] = field(default_factory=list)  # categorical: value i is index i + 1

    @property
    def cardinality(self) -> int:
        """Distinct encoded values of a categorical column (its vocabulary and 'unknown')."""
        return len(self.vocabulary) + 1

    def encode(self, values: Sequence[Any], where: str, strict: bool = False) -> np.ndarray:
        """Raw values -> float64 model values; ``where`` names them in errors. A category
        training never saw is 'unknown' (index 0), or with ``strict`` an InputError."""
        if self.kind == NUMERIC:
            out = np.empty(len(values))
            for i, value in enumerate(values):
                out[i] = self.mean if is_missing(value) else number(value, self.name, where)
            # read at float32 precision: a value sent as a float32 tensor or as JSON text
            # encodes to the same bits (and so gets the same seeded decision)
            single = out.astype(np.float32)
            if not np.isfinite(single).all():
                value = values[int(np.argmin(np.isfinite(single)))]
                raise InputError(f"{where}: column '{self.name}' is out of range, got {value!r}")
            return (single.astype(np.float64) - self.mean) / self.std
        index = {v: i + 1 for i, v in enumerate(self.vocabulary)}
        if strict:
            unseen = [v for v in values if not is_missing(v) and category(v) not in index]
            if unseen:
                shown = ", ".join(self.vocabulary[:12]) + (", ..." if len(index) > 12 else "")
                raise InputError(
                    f"{where}: column '{self.name}' has no category {unseen[0]!r}. Known: "
                    f"{shown} (or null for missing)"
                )
        return np.array(
            [0 if is_missing(v) else index.get(category(v), 0) for v in values], dtype=np.float64
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def number(value: Any, column: str, where: str) -> float:
    """A finite number, or an error naming the column and where the value came from."""
    if isinstance(value, bool):
        raise InputError(f"{where}: column '{column}' is numeric, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: column '{column}' is numeric, got {value!r}") from None
    if not np.isfinite(out):
        raise InputError(f"{where}: column '{column}' must be finite, got {value!r}")
    return out


def category(value: Any) -> str:
    """How a categorical value is compared: its text, trimmed (3 and '3' are one category)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


@dataclass
class Table:
    """Raw rows by column (lists of str/float/None), as read from a file."""

    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def take(self, rows: Sequence[int] | np.ndarray) -> Table:
        return Table({name: [values[i] for i in rows] for name, values in self.columns.items()})

    def column(self, name: str, where: str) -> list[Any]:
        if name not in self.columns:
            raise DataError(
                f"{where} has no column '{name}'; its columns: {', '.join(self.columns)}"
            )
        return self.columns[name]


def read_table(path: Path, header: Sequence[str] | None = None, skip_rows: int = 0) -> Table:
    """A CSV (``header`` names its columns when the file has none) or Parquet file, its values
    kept as text (CSV) or as stored (Parquet); missing markers are resolved by the schema."""
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(
                path, header=None if header else "infer", names=list(header) if header else None,
                skiprows=skip_rows, dtype=str, keep_default_na=False, skipinitialspace=True,
                comment=None,
            )  # fmt: skip
    except (OSError, ValueError, ImportError) as err:
        raise DataError(f"'{path}' is not a readable table ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return Table({name: frame[name].tolist() for name in frame.columns})


def infer_kind(values: Iterable[Any]) -> str:
    """Numeric when every present value parses as a number, else categorical."""
    present = [v for v in values if not is_missing(v)]
    try:
        for value in present:
            if isinstance(value, bool):
                return CATEGORICAL
            float(value)
    except (TypeError, ValueError):
        return CATEGORICAL
    return NUMERIC if present else CATEGORICAL


def fit_columns(
    table: Table,
    names: Sequence[str],
    declared: Mapping[str, str],
    where: str,
    normalize: bool = True,
) -> list[Column]:
    """The schema of ``names`` fitted on ``table`` (the training split)."""
    columns = []
    for name in names:
        values = table.column(name, where)
        kind = declared.get(name) or infer_kind(values)
        if kind == NUMERIC:
            numbers = np.array([number(v, name, where) for v in values if not is_missing(v)])
            mean = float(numbers.mean()) if len(numbers) and normalize else 0.0
            std = float(numbers.std()) if len(numbers) and normalize else 1.0
            columns.append(Column(name, NUMERIC, mean, std if std > 1e-12 else 1.0))
        else:
            counts = Counter(category(v) for v in values if not is_missing(v))
            vocabulary = sorted(counts, key=lambda c: (-counts[c], c))
            columns.append(Column(name, CATEGORICAL, vocabulary=vocabulary))
    return columns


def encode(table: Table, columns: Sequence[Column], where: str, strict: bool = False) -> np.ndarray:
    """Model inputs float32 (N, F) for the rows of ``table`` (``strict``: unseen categories
    are errors, as for served rows)."""
    if not columns:
        raise DataError(f"{where}: a table needs at least one input column")
    encoded = [c.encode(table.column(c.name, where), where, strict) for c in columns]
    return np.stack(encoded, axis=1).astype(np.float32)


def labels(values: Sequence[Any], classes: Sequence[str], where: str) -> np.ndarray:
    """Class indices of target values (each must be one of ``classes``)."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        key = category(value)
        if key not in index:
            raise DataError(f"{where}: target value {value!r} in row {i} is not a known class")
        out[i] = index[key]
    return out


def fingerprint(parts: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True, default=str).encode()).hexdigest()


def table_splits(
    cfg: DataConfig,
    train: Table,
    test: Table | None,
    target: str,
    where: str,
    sources: Sequence[str] = (),
    files: Sequence[str] = (),
    classes: Sequence[str] | None = None,
) -> DataSplits:
    """Split (the official ``test``, else ``data.test_fraction``; ``data.val_fraction`` of
    train), fit the schema on the training rows, encode every split; the sensitive columns'
    values are kept per example in each split's ``groups``."""
    whole = Table(
        {n: v + (test.column(n, where) if test else []) for n, v in train.columns.items()}
    )
    targets = whole.column(target, where)
    if classes is None:
        classes = sorted({category(v) for v in targets[: len(train)] if not is_missing(v)})
    if len(classes) < 2:
        raise DataError(f"{where}: the target column '{target}' needs at least two classes")
    y = labels(targets, classes, where)
    rows = np.arange(len(whole))
    n = len(train)
    raw = RawDataset(
        RawSplit(rows[:n], y[:n]), list(classes), 1.0,
        test=RawSplit(rows[n:], y[n:]) if test is not None else None,
    )  # fmt: skip
    parts = split_dataset(raw, cfg)
    for name in cfg.sensitive:
        whole.column(name, where)  # declared sensitive columns must exist
    inputs = [
        name for name in whole.columns
        if name != target and (cfg.sensitive_input or name not in cfg.sensitive)
    ]  # fmt: skip
    declared = dict(cfg.columns) if cfg.columns else {}
    unknown = sorted(set(declared) - set(inputs))
    if unknown:
        raise DataError(
            f"data.columns names '{unknown[0]}', which is not an input column of {where}"
        )
    if cfg.columns is not None:
        inputs = [name for name in inputs if name in declared]
    try:  # a value a file holds is a data error, not an input error
        columns = fit_columns(whole.take(parts[0].x), inputs, declared, where, cfg.normalize)
        encoded = [encode(whole.take(part.x), columns, where) for part in parts]
    except InputError as err:
        raise DataError(str(err)) from None
    splits = []
    for part, x in zip(parts, encoded, strict=True):
        rows_of = whole.take(part.x)
        groups = {s: [category(v) if not is_missing(v) else "?" for v in rows_of.column(s, where)]
                  for s in cfg.sensitive}  # fmt: skip
        splits.append(Split(torch.from_numpy(x), torch.from_numpy(part.y), groups))
    settings = cfg.model_dump(include=SPLIT_SETTINGS)
    meta = DataMeta(
        name=cfg.name,
        codec="tabular",
        input_shape=(len(columns),),
        classes=list(classes),
        input_scale=1.0,
        mean=[c.mean for c in columns],
        std=[c.std for c in columns],
        fingerprint=fingerprint([cfg.name, list(sources) or _content(whole), settings]),
        sizes={"train": len(parts[0]), "val": len(parts[1]), "test": len(parts[2])},
        files=list(files),
        feature_names=[c.name for c in columns],
        columns=[c.to_dict() for c in columns],
        sensitive=list(cfg.sensitive),
    )
    return DataSplits(splits[0], splits[1], splits[2], meta)


def _content(table: Table) -> str:
    return hashlib.sha256(json.dumps(table.columns, default=str).encode()).hexdigest()
