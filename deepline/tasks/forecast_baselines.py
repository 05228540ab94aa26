"""Statistical forecasters a deep forecaster must beat, and the forecasting metrics.

Each baseline forecasts ``horizon`` values from the whole history before an origin, refitted at
every origin: seasonal naive (the last season repeated), exponential smoothing (ETS: Holt-Winters
with additive or no trend, damped or not, and additive seasonality when the season is above 1)
and ARIMA (seasonal when the season is above 1); ETS and ARIMA pick their form by AIC among a
few candidates at each origin (statsmodels fits them).

Metrics of forecasts (N, H) against actuals: MAE, RMSE, sMAPE (in %, 0 to 200) and MASE, the
MAE over that of the one-season-ago forecast within each origin's context window (Hyndman &
Koehler 2006, in-sample scale on the context every method reads).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

Forecaster = Callable[[np.ndarray, int, int], np.ndarray]  # (history, horizon, season) -> (H,)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last ``season`` values repeated over the horizon (the last value when season 1)."""
    last = history[-season:]
    return np.resize(last, horizon).astype(np.float64)


def ets(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Holt-Winters exponential smoothing, the form with the lowest AIC."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = "add" if season > 1 and len(history) >= 2 * season + 2 else None
    best, forecast = np.inf, seasonal_naive(history, horizon, season)
    for trend, damped in ((None, False), ("add", False), ("add", True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit = ExponentialSmoothing(
                    history, trend=trend, damped_trend=damped, seasonal=seasonal,
                    seasonal_periods=season if seasonal else None,
                ).fit()  # fmt: skip
            except (ValueError, np.linalg.LinAlgError):
                continue
        if np.isfinite(fit.aic) and fit.aic < best:
            best, forecast = fit.aic, np.asarray(fit.forecast(horizon), dtype=np.float64)
    return forecast


ARIMA_ORDERS = ((1, 0, 0), (2, 0, 0), (2, 0, 1), (1, 1, 1), (0, 1, 1), (2, 1, 2))
SEASONAL_ORDERS = ((0, 1, 1), (1, 0, 0))


def arima(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """ARIMA(p, d, q), x (P, D, Q)_season when the season is above 1, the lowest AIC of a few
    common orders (the airline model among them)."""
    from statsmodels.tsa.arima.model import ARIMA

    seasonal_orders = [(*o, season) for o in SEASONAL_ORDERS] if season > 1 else [(0, 0, 0, 0)]
    orders = ARIMA_ORDERS if season == 1 else ((0, 1, 1), (1, 1, 1), (1, 0, 0))
    best, forecast = np.inf, seasonal_naive(history, horizon, season)
    for order in orders:
        for seasonal_order in seasonal_orders:
            trend = "c" if order[1] == 0 and seasonal_order[1] == 0 else "n"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    fit = ARIMA(history, order=order, seasonal_order=seasonal_order,
                                trend=trend).fit()  # fmt: skip
                except (ValueError, np.linalg.LinAlgError):
                    continue
            if np.isfinite(fit.aic) and fit.aic < best:
                best, forecast = fit.aic, np.asarray(fit.forecast(horizon), dtype=np.float64)
    return forecast


BASELINES: dict[str, Forecaster] = {"seasonal_naive": seasonal_naive, "ets": ets, "arima": arima}


def mase_scale(context: np.ndarray, season: int) -> float:
    """Mean absolute error of the one-season-ago forecast within ``context`` (lag 1 when the
    context is not longer than a season)."""
    lag = season if len(context) > season else 1
    scale = float(np.mean(np.abs(context[lag:] - context[:-lag])))
    return scale if scale > 0 else 1.0


def forecast_metrics(
    forecasts: np.ndarray, actuals: np.ndarray, scales: Sequence[float]
) -> dict[str, float]:
    """MAE, RMSE, sMAPE and MASE of forecasts (N, H) against actuals (N, H); ``scales``: each
    origin's MASE scale."""
    f, a = np.asarray(forecasts, np.float64), np.asarray(actuals, np.float64)
    error = f - a
    denominator = np.abs(f) + np.abs(a)
    ratio = np.divide(2 * np.abs(error), denominator, out=np.zeros_like(error),
                      where=denominator > 0)  # fmt: skip
    per_origin = np.abs(error).mean(1) / np.asarray(scales, np.float64)
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "smape": float(100 * ratio.mean()),
        "mase": float(per_origin.mean()),
    }
