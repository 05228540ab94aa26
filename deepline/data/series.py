"""Time series as forecasting windows, cut for a rolling-origin backtest with no look-ahead.

A series is T values of a target and of optional covariates, (T, F) with the target first. An
*origin* is the index of the first value forecast: the model reads the ``context`` values
before it and forecasts ``horizon`` values from it. Test origins are the latest, ``stride``
apart (their horizons end at the series' end); validation origins come just before the first
test origin; training windows are every window whose horizon ends before the first validation
origin. Nothing after an origin reaches what is read at it.

>>> import numpy as np
>>> from deepline.config import DataConfig
>>> cfg = DataConfig(name="my-series", context=8, series={"horizon": 2, "test_origins": 2,
...                                                        "val_origins": 1})
>>> data = series_splits(cfg, np.arange(40.0)[:, None], [str(t) for t in range(40)], ["y"])
>>> data.meta.series["origins"], data.train.x.shape, data.test.y.tolist()
({'val': [34], 'test': [36, 38]}, torch.Size([25, 8, 1]), [[36.0, 37.0], [38.0, 39.0]])
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deepline.config import DataConfig
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.errors import DataError

MIN_TRAIN_WINDOWS = 8


def backtest_origins(length: int, cfg: DataConfig) -> dict[str, list[int]]:
    """The validation and test origins of a series of ``length`` values."""
    s = cfg.series
    stride = s.stride or s.horizon
    first_test = length - s.horizon - (s.test_origins - 1) * stride
    test = [first_test + i * stride for i in range(s.test_origins)]
    last_val = first_test - s.horizon
    val = [last_val - (s.val_origins - 1 - i) * stride for i in range(s.val_origins)]
    return {"val": val, "test": test}


def series_splits(
    cfg: DataConfig,
    values: np.ndarray,
    times: Sequence[str],
    columns: Sequence[str],
    season: int = 1,
    files: Sequence[str] = (),
) -> DataSplits:
    """(T, F) values (target first) -> windows x (N, context, F) and y (N, horizon) per split.

    x and y are in the series' own units: models scale each window by its own past
    (:class:`deepline.tasks.forecasting.WindowScaled`), so no statistic of later values is used.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise DataError(f"series '{cfg.name}': values must be finite numbers, (T, F)")
    context, horizon = cfg.context, cfg.series.horizon
    origins = backtest_origins(len(values), cfg)
    train_end = origins["val"][0]  # training horizons end before the first validation origin
    train_origins = list(range(context, train_end - horizon + 1))
    if len(train_origins) < MIN_TRAIN_WINDOWS or origins["val"][0] < context:
        raise DataError(
            f"series '{cfg.name}' has {len(values)} values: too few for data.context {context}, "
            f"horizon {horizon}, {cfg.series.val_origins} validation and "
            f"{cfg.series.test_origins} test origins ({len(train_origins)} training windows; "
            f"at least {MIN_TRAIN_WINDOWS}). Shorten the context or use fewer origins"
        )

    def windows(at: list[int]) -> Split:
        x = np.stack([values[o - context : o] for o in at]).astype(np.float32)
        y = np.stack([values[o : o + horizon, 0] for o in at]).astype(np.float32)
        return Split(torch.from_numpy(x), torch.from_numpy(y))

    train = values[:train_end, 0]
    digest = hashlib.sha256(np.ascontiguousarray(values).tobytes())
    digest.update(repr((list(times), list(columns))).encode())
    meta = DataMeta(
        name=cfg.name, codec="series", input_shape=(context, values.shape[1]), classes=[],
        input_scale=1.0, mean=[float(train.mean())], std=[float(train.std() or 1.0)],
        fingerprint=digest.hexdigest(),
        sizes={"train": len(train_origins), "val": len(origins["val"]),
               "test": len(origins["test"])},
        files=list(files), feature_names=list(columns),
        target_names=[f"t+{h + 1}" for h in range(horizon)],
        series={"times": list(times), "values": values[:, 0].tolist(), "season": season,
                "horizon": horizon, "context": context, "origins": origins,
                "example": values[train_end - context : train_end].tolist()},
    )  # fmt: skip
    return DataSplits(windows(train_origins), windows(origins["val"]), windows(origins["test"]),
                      meta)  # fmt: skip


def read_series_table(path: Path, cfg: DataConfig) -> tuple[np.ndarray, list[str], list[str]]:
    """A CSV or Parquet file's target (``data.series.target``, else its first numeric column)
    and covariates as (T, F) values, sorted by ``data.series.time_column`` when given; the
    times as text and the column names."""
    import pandas as pd

    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DataError(f"'{path}' is not a readable CSV or Parquet table ({err})") from None
    s = cfg.series
    if s.time_column is not None:
        if s.time_column not in table:
            raise DataError(f"data.series.time_column: '{path}' has no column '{s.time_column}'")
        table = table.sort_values(s.time_column, kind="stable")
    numeric = [c for c in table.columns if c != s.time_column and
               pd.api.types.is_numeric_dtype(table[c])]  # fmt: skip
    target = s.target or (numeric[0] if numeric else None)
    columns = [target, *s.covariates]
    missing = [c for c in columns if c not in table]
    if target is None or missing:
        raise DataError(
            f"data.series: '{path}' has no column {missing[0] if missing else '(numeric)'}; "
            f"its columns: {', '.join(map(str, table.columns))}"
        )
    values = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise DataError(f"'{path}': row {int(bad[0]) + 2} has a missing or non-numeric value "
                        f"in {', '.join(map(str, columns))}")  # fmt: skip
    times = (table[s.time_column].astype(str).tolist() if s.time_column
             else [str(i) for i in range(len(table))])  # fmt: skip
    return values, times, [str(c) for c in columns]
