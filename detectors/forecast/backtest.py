"""Rolling-origin backtest of forecasters: sMAPE, MASE and interval coverage per origin.

At each origin the forecaster is refitted on the history before it (optionally a trailing
window, for speed) and forecasts `horizon` steps; the metrics compare that path with what
happened. MASE divides the forecast MAE by the in-sample MAE of the weekly seasonal-naive
forecast over the same history (daily if the history is under two weeks), so MASE < 1 means
better than repeating last week, the usual bar for rate series with a weekend.

Also the two standard evaluations: NAB's New York taxi series on its ordinary weeks and a
twin workload with a calendar of recurring campaigns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.forecast.base import Event, Forecaster
from detectors.forecast.models import DAY_S, WEEK_S, ForecastError, check_series, period_steps

NYC_TAXI = "realKnownCause/nyc_taxi.csv"


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent: mean of 2|f − a| / (|a| + |f|), 0/0 counted as 0."""
    a, f = np.asarray(actual, float), np.asarray(forecast, float)
    den = np.abs(a) + np.abs(f)
    ratio = np.divide(2 * np.abs(f - a), den, out=np.zeros_like(den), where=den > 0)
    return float(100 * ratio.mean())


def mase_scale(history: np.ndarray, step: float) -> float:
    """In-sample MAE of the seasonal-naive forecast: weekly lag if two weeks fit, else daily."""
    lag = period_steps(WEEK_S, step)
    if history.size < 2 * lag:
        lag = period_steps(DAY_S, step)
    if history.size <= lag:
        raise ForecastError(f"history of {history.size} steps too short to scale MASE")
    return float(np.mean(np.abs(history[lag:] - history[:-lag])))


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """Mean absolute scaled error: forecast MAE over the naive in-sample MAE."""
    mae = float(np.mean(np.abs(np.asarray(actual, float) - np.asarray(forecast, float))))
    return mae / scale if scale > 0 else float("inf")


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside [lower, upper]."""
    a = np.asarray(actual, float)
    return float(np.mean((a >= lower) & (a <= upper)))


def backtest(
    factories: dict[str, Callable[[], Forecaster]],
    times: np.ndarray,
    values: np.ndarray,
    horizon: int,
    step: int,
    min_history: int,
    *,
    level: float = 0.9,
    events: Sequence[Event] = (),
    window: int | None = None,
    keep: Callable[[int], bool] | None = None,
) -> pd.DataFrame:
    """One tidy row per (forecaster, origin): sMAPE, MASE, coverage and mean interval width.

    Origins are indices min_history, min_history + step, … with a full horizon after them;
    `keep(origin)` may skip some (e.g. anomalous weeks); `window` caps the fitted history.
    """
    t, y, dt = check_series(times, values)
    rows = []
    for origin in range(min_history, y.size - horizon + 1, step):
        if keep is not None and not keep(origin):
            continue
        lo = 0 if window is None else max(0, origin - window)
        hist_t, hist_y = t[lo:origin], y[lo:origin]
        actual = y[origin : origin + horizon]
        scale = mase_scale(hist_y, dt)
        for name, factory in factories.items():
            fc = factory().fit(hist_t, hist_y, events).predict(horizon, level, events)
            rows.append(
                {
                    "forecaster": name,
                    "origin": float(t[origin]),
                    "smape": smape(actual, fc.mean),
                    "mase": mase(actual, fc.mean, scale),
                    "coverage": coverage(actual, fc.lower, fc.upper),
                    "width": float(np.mean(fc.upper - fc.lower)),
                }
            )
    return pd.DataFrame(
        rows, columns=["forecaster", "origin", "smape", "mase", "coverage", "width"]
    )


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per forecaster: origins, mean and median sMAPE, mean MASE, mean coverage."""
    g = results.groupby("forecaster", sort=False)
    return pd.DataFrame(
        {
            "origins": g.size(),
            "smape_mean": g["smape"].mean(),
            "smape_median": g["smape"].median(),
            "mase_mean": g["mase"].mean(),
            "coverage": g["coverage"].mean(),
        }
    ).round(3)


# --------------------------------------------------------------------------- NYC taxi


def to_seconds(column: pd.Series) -> np.ndarray:
    """Unix seconds from a numeric (already seconds) or ISO date-time column."""
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64)
    try:
        stamps = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError) as exc:
        raise ForecastError(f"cannot read times in column {column.name!r}: {exc}") from None
    return stamps.dt.tz_localize(None).to_numpy("datetime64[s]").astype(np.int64).astype(float)


def taxi_ordinary_keep(nab_root: Path, times: np.ndarray) -> Callable[[int], bool]:
    """Keep an origin (next-day forecast) when neither its week nor last week is labelled.

    Weeks run Monday to Sunday; the week before matters because the weekly naive copies it.
    """
    windows = json.loads((nab_root / "labels" / "combined_windows.json").read_text())[NYC_TAXI]
    stamps = pd.to_datetime(times, unit="s")
    week = np.asarray(stamps.to_period("W-SUN").astype(str))
    bad: set[str] = set()
    for start, end in windows:
        inside = (stamps >= pd.Timestamp(start)) & (stamps <= pd.Timestamp(end))
        bad |= set(week[np.asarray(inside)])
    lag = period_steps(WEEK_S, float(times[1] - times[0]))

    def keep(origin: int) -> bool:
        day_end = min(origin + 47, times.size - 1)
        checks = (origin, day_end, origin - 1, max(origin - lag, 0))
        return not any(week[i] in bad for i in checks)

    return keep


def nyc_taxi_backtest(
    nab_root: Path, factories: dict[str, Callable[[], Forecaster]], window_weeks: int = 8
) -> pd.DataFrame:
    """Next-day (48 × 30 min) forecasts from each midnight of the taxi series' ordinary weeks."""
    frame = pd.read_csv(nab_root / "data" / NYC_TAXI)
    times = to_seconds(frame["timestamp"])
    values = frame["value"].to_numpy(dtype=np.float64)
    day = period_steps(DAY_S, 1800.0)
    return backtest(
        factories,
        times,
        values,
        horizon=day,
        step=day,
        min_history=2 * 7 * day,
        window=window_weeks * 7 * day,
        keep=taxi_ordinary_keep(nab_root, times),
    )


# --------------------------------------------------------------------------- twin workload


def twin_series(seed: int = 7, weeks: int = 5, tick: float = 1800.0):
    """A seeded twin rate series (req/s per tick) with weekly Thursday campaigns as Events."""
    from twin.scenario.schema import CalendarEvent, RequestClass, Workload
    from twin.scenario.workload import rate_curves, sample_arrivals

    lifts = [1.6, 1.5, 1.7, 1.55, 1.65, 1.6]
    calendar = [
        CalendarEvent(
            name="thursday-campaign",
            kind="campaign",
            start=(7 * w + 3) * DAY_S + 10 * 3600,
            duration=6 * 3600,
            lift=lifts[w % len(lifts)],
        )
        for w in range(weeks)
    ]
    workload = Workload(
        classes=[RequestClass(name="web", entry="frontend", rate=20.0)],
        daily_amplitude=0.5,
        weekly_amplitude=0.3,
        noise=0.1,
        calendar=calendar,
    )
    n = int(weeks * WEEK_S / tick)
    rates = rate_curves(workload, n, tick)
    counts = sample_arrivals(rates, workload.noise, tick, np.random.default_rng(seed))
    times = np.arange(n) * tick
    events = [Event(e.name, e.kind, e.start, e.start + e.duration) for e in calendar]
    return times, counts[:, 0] / tick, events


def twin_backtest(
    factories: dict[str, Callable[[], Forecaster]], seed: int = 7, weeks: int = 5
) -> pd.DataFrame:
    """Next-day forecasts from each midnight after two weeks, calendar events declared."""
    times, values, events = twin_series(seed, weeks)
    day = period_steps(DAY_S, 1800.0)
    return backtest(
        factories, times, values, horizon=day, step=day, min_history=14 * day, events=events
    )
