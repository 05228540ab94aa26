"""Time series for forecasting: real series bundled with statsmodels (no download) and yours.

``sunspots`` (yearly, 1700-2008), ``co2`` (Mauna Loa, monthly means of the weekly record,
1958-2001) and ``elnino`` (monthly sea surface temperature, 1950-2010) ship inside statsmodels'
installed package; ``series-csv`` reads a CSV or Parquet file of yours (``data.path``; columns
chosen by ``data.series``). Windows and backtest origins: :mod:`deepline.data.series`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from deepline.config import DataConfig, SeriesConfig
from deepline.data.catalog import DataSample, DatasetSpec, register
from deepline.data.datasets.images import require_path
from deepline.data.meta import DataSplits
from deepline.data.series import read_series_table, series_splits

STATSMODELS = "BSD-3-Clause (statsmodels); the data are public domain or from the cited sources"


def _bundled(folder: Path) -> DataSample:
    return DataSample()


def _statsmodels_entry(
    name: str, description: str, season: int, citation: str
) -> Callable[[Callable[[], tuple[np.ndarray, list[str]]]], object]:
    """Register a series read from statsmodels' datasets by ``load`` (values, times)."""
    spec = DatasetSpec(name=name, description=description, licence=STATSMODELS,
                       homepage="https://www.statsmodels.org/stable/datasets/index.html",
                       citation=citation, task="forecasting")  # fmt: skip

    def decorate(load: Callable[[], tuple[np.ndarray, list[str]]]) -> object:
        def read(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
            values, times = load()
            return series_splits(cfg, values[:, None], times, [name], cfg.series.season or season)

        read.__doc__ = f"{description}: windows and origins by data.context and data.series."
        return register(spec, sample=_bundled)(read)

    return decorate


@_statsmodels_entry(
    "sunspots", "yearly mean sunspot numbers 1700-2008 (309 values; cycle about 11 years)", 11,
    "SIDC, Royal Observatory of Belgium; via statsmodels.datasets.sunspots",
)  # fmt: skip
def _sunspots() -> tuple[np.ndarray, list[str]]:
    import statsmodels.api as sm

    table = sm.datasets.sunspots.load_pandas().data
    return table["SUNACTIVITY"].to_numpy(float), [str(int(y)) for y in table["YEAR"]]


@_statsmodels_entry(
    "co2", "atmospheric CO2 at Mauna Loa, monthly means 1958-2001 (526 values, ppm)", 12,
    "Keeling et al., Scripps Institution of Oceanography; via statsmodels.datasets.co2",
)  # fmt: skip
def _co2() -> tuple[np.ndarray, list[str]]:
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().ffill()  # the few months without a reading: the last
    return monthly.to_numpy(float), [t.strftime("%Y-%m") for t in monthly.index]


@_statsmodels_entry(
    "elnino", "sea surface temperature of the El Nino region, monthly 1950-2010 (732, deg C)", 12,
    "NOAA Climate Prediction Center; via statsmodels.datasets.elnino",
)  # fmt: skip
def _elnino() -> tuple[np.ndarray, list[str]]:
    import statsmodels.api as sm

    table = sm.datasets.elnino.load_pandas().data
    months = table.columns[1:]
    values = table[months].to_numpy(float).reshape(-1)
    times = [f"{int(y)}-{m + 1:02d}" for y in table["YEAR"] for m in range(len(months))]
    return values, times


SERIES_CSV = DatasetSpec(
    name="series-csv",
    description="your time series (data.path): a CSV or Parquet table with a target column and "
    "optional covariates (data.series), rows in time order or sorted by a time column",
    licence="yours",
    needs_path=True,
    task="forecasting",
)


def _series_csv_sample(folder: Path) -> DataSample:
    """A noisy seasonal series of 120 months with a covariate, rows shuffled."""
    rng = np.random.default_rng(0)
    t = np.arange(120)
    temperature = 10 + 8 * np.sin(2 * np.pi * t / 12)
    sales = 100 + 0.5 * t + 2 * temperature + rng.normal(0, 1, len(t))
    rows = [f"{2000 + i // 12}-{i % 12 + 1:02d},{s:.3f},{c:.3f}"
            for i, (s, c) in zip(t, zip(sales, temperature))]  # fmt: skip
    rows = [rows[i] for i in rng.permutation(len(rows))]
    path = folder / "sales.csv"
    path.write_text("month,sales,temperature\n" + "\n".join(rows) + "\n")
    series = SeriesConfig(time_column="month", target="sales", covariates=["temperature"],
                          horizon=6, test_origins=2, val_origins=2, season=12)  # fmt: skip
    return DataSample(overrides={"path": str(path), "context": 24, "series": series})


@register(SERIES_CSV, sample=_series_csv_sample)
def read_series_csv(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """The target and covariates of ``data.path`` (``data.series`` names the columns), cut
    into windows and backtest origins."""
    path = require_path(cfg, "a CSV or Parquet table of a time series")
    values, times, columns = read_series_table(path, cfg)
    return series_splits(cfg, values, times, columns, cfg.series.season or 1, [str(path)])
