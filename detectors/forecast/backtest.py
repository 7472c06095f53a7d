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


def compare(
    factories: dict[str, Callable[[], Forecaster]],
    times: np.ndarray,
    values: np.ndarray,
    horizon: int,
    step: int,
    min_history: int,
    *,
    level: float = 0.9,
    events: Sequence[Event] = (),
    keep: Callable[[int], bool] | None = None,
) -> pd.DataFrame:
    """`backtest` rows for every model at the same origins: a streaming model in one pass,
    the others refitted at each origin (their history capped at eight weeks)."""
    from detectors.forecast.registry import is_streaming

    _, y, dt = check_series(times, values)
    batch = {k: f for k, f in factories.items() if not is_streaming(f())}
    frames = []
    if batch:
        window = 8 * period_steps(WEEK_S, dt)
        rows = backtest(
            batch, times, values, horizon, step, min_history,
            level=level, events=events, window=window, keep=keep,
        )  # fmt: skip
        frames.append(rows)
    for name, factory in factories.items():
        if name in batch:
            continue
        model = factory()
        if hasattr(model, "declare"):
            model.declare(events)
        rows = online_backtest(
            model, times, values, horizon=horizon, every=step, warmup=min_history,
            short=horizon, level=level, keep=keep, events=events,
        )  # fmt: skip
        if rows.empty:
            continue
        scale = np.array([mase_scale(y[:i], dt) for i in rows["index"]])
        frames.append(
            pd.DataFrame(
                {
                    "forecaster": name,
                    "origin": rows["origin"],
                    "smape": rows["smape"],
                    "mase": rows["mae"] / scale,
                    "coverage": rows["coverage"],
                    "width": rows["width"],
                }
            )
        )
    columns = ["forecaster", "origin", "smape", "mase", "coverage", "width"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _ready(model) -> bool:
    """Whether a streaming model can forecast yet (one without `is_ready` always can)."""
    check = getattr(model, "is_ready", None)
    return True if check is None else bool(check())


def online_backtest(
    model,
    times: np.ndarray,
    values: np.ndarray,
    *,
    horizon: int,
    every: int,
    warmup: int,
    short: int,
    observed: np.ndarray | None = None,
    level: float = 0.9,
    keep: Callable[[int], bool] | None = None,
    events: Sequence[Event] = (),
) -> pd.DataFrame:
    """One pass of a streaming forecaster (`learn_one`/`predict`), scored at rolling origins.

    After `warmup` observations, every `every`-th one is an origin (unless `keep(origin)`
    says no): the model forecasts `horizon` steps from what it has seen, then keeps
    learning. An origin where the model cannot forecast yet (`is_ready()` false: e.g. its
    first day was gaps) is skipped, never scored as a failure nor with a made-up band.
    Scores cover the targets that were really observed (`observed`, e.g. not an
    interpolated gap, which the model is told about through `learn_one(..., observed=False)`):
    sMAPE, MAE, the MAE of the daily and weekly naive forecasts from the same origin, and
    the share inside the interval over the whole horizon and over its first `short` steps.
    """
    t, y, dt = check_series(times, values)
    seen = np.ones(y.size, bool) if observed is None else np.asarray(observed, bool)
    day = period_steps(DAY_S, dt)
    week = 7 * day
    rows = []
    for i in range(y.size):
        if observed is None:
            model.learn_one(float(t[i]), float(y[i]))
        else:
            model.learn_one(float(t[i]), float(y[i]), observed=bool(seen[i]))
        origin = i + 1
        if origin < warmup or (origin - warmup) % every or origin + horizon > y.size:
            continue
        if keep is not None and not keep(origin):
            continue
        if not _ready(model):
            continue  # not scored: no forecast to score (counted by the caller's origins)
        fc = model.predict(horizon, level, events)
        target = slice(origin, origin + horizon)
        real = seen[target]
        if not real.any():
            continue
        actual = y[target][real]
        lags = np.arange(origin, origin + horizon) - day * np.ceil(np.arange(1, horizon + 1) / day)
        daily = y[lags.astype(np.int64)][real]
        row = {
            "index": origin,
            "origin": float(t[origin - 1]),
            "history_days": origin / day,
            "smape": smape(actual, fc.mean[real]),
            "mae": float(np.mean(np.abs(actual - fc.mean[real]))),
            "mae_daily_naive": float(np.mean(np.abs(actual - daily))),
            "mae_weekly_naive": np.nan,
            "coverage": coverage(actual, fc.lower[real], fc.upper[real]),
            "coverage_short": np.nan,
            "width": float(np.mean((fc.upper - fc.lower)[real])),
        }
        if origin >= week and horizon <= week:
            weekly = y[np.arange(origin, origin + horizon) - week][real]
            row["mae_weekly_naive"] = float(np.mean(np.abs(actual - weekly)))
        first = real[:short]
        if first.any():
            row["coverage_short"] = coverage(
                y[origin : origin + short][first], fc.lower[:short][first], fc.upper[:short][first]
            )
        rows.append(row)
    return pd.DataFrame(rows)


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
    nab_root: Path, factories: dict[str, Callable[[], Forecaster]]
) -> pd.DataFrame:
    """Next-day (48 × 30 min) forecasts from each midnight of the taxi series' ordinary weeks."""
    frame = pd.read_csv(nab_root / "data" / NYC_TAXI)
    times = to_seconds(frame["timestamp"])
    values = frame["value"].to_numpy(dtype=np.float64)
    day = period_steps(DAY_S, 1800.0)
    return compare(
        factories,
        times,
        values,
        horizon=day,
        step=day,
        min_history=2 * 7 * day,
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
    return compare(
        factories, times, values, horizon=day, step=day, min_history=14 * day, events=events
    )
