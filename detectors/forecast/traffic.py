"""Real traffic series from the NAB corpus, regularised, split into development and held-out.

Demand-like series only (counts of passengers, tweets, requests, bytes in, road occupancy);
CPU, latency, speed and temperature series are not a load and are left out. Settings of
the forecaster and of the predictive scaler are chosen on DEVELOPMENT alone; HELD_OUT is
only ever reported. The split was fixed before any held-out series was looked at in a
backtest or a capacity run: one series of each kind in development (a smooth city demand,
two tweet volumes, a gappy road sensor, on/off network pulses), everything else held out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.forecast.models import ForecastError

DEVELOPMENT = (
    "realKnownCause/nyc_taxi.csv",
    "realTweets/Twitter_volume_AMZN.csv",
    "realTweets/Twitter_volume_FB.csv",
    "realTraffic/occupancy_6005.csv",
    "realAWSCloudwatch/ec2_network_in_5abac7.csv",
)
HELD_OUT = (
    "realTweets/Twitter_volume_AAPL.csv",
    "realTweets/Twitter_volume_CRM.csv",
    "realTweets/Twitter_volume_CVS.csv",
    "realTweets/Twitter_volume_GOOG.csv",
    "realTweets/Twitter_volume_IBM.csv",
    "realTweets/Twitter_volume_KO.csv",
    "realTweets/Twitter_volume_PFE.csv",
    "realTweets/Twitter_volume_UPS.csv",
    "realAWSCloudwatch/elb_request_count_8c0756.csv",
    "realAWSCloudwatch/ec2_network_in_257a54.csv",
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realTraffic/occupancy_t4013.csv",
    "realTraffic/TravelTime_387.csv",
    "realTraffic/TravelTime_451.csv",
)


def find_nab_root() -> Path:
    """The nearest shared/data/nab above the checkout (../shared from a clone, ../../shared
    from a worktree under wt/); the first candidate if none exists (callers then skip)."""
    here = Path(__file__).resolve().parents[2]
    candidates = [parent / "shared" / "data" / "nab" for parent in here.parents]
    return next((c for c in candidates if c.is_dir()), candidates[0])


NAB_ROOT = find_nab_root()


@dataclass(frozen=True)
class Series:
    """A regular series: times (unix s), values, and which points were really observed."""

    name: str
    times: np.ndarray
    values: np.ndarray
    observed: np.ndarray  # False where a gap was filled by interpolation
    step: float


def regularize(times: np.ndarray, values: np.ndarray, step: float | None = None):
    """Onto a regular grid of `step` (default: the median spacing): bin means, gaps linear.

    Returns (times, values, observed). Real exports skip and jitter samples (NAB's road
    sensors: a quarter of their steps are off-grid, one gap lasts four days).
    """
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if t.size < 2:
        raise ForecastError(f"series too short: {t.size} points")
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    if step is None:
        step = float(np.median(np.diff(t)))
    if step <= 0:
        raise ForecastError("times must not all be equal")
    start = np.floor(t[0] / step) * step
    index = np.round((t - start) / step).astype(np.int64)
    n = int(index[-1]) + 1
    sums = np.bincount(index, weights=y, minlength=n)
    counts = np.bincount(index, minlength=n)
    observed = counts > 0
    grid = start + step * np.arange(n)
    out = np.empty(n)
    out[observed] = sums[observed] / counts[observed]
    out[~observed] = np.interp(grid[~observed], grid[observed], out[observed])
    return grid, out, observed


def load(name: str, root: Path = NAB_ROOT) -> Series:
    """One NAB series by its path under data/, regularised."""
    path = root / "data" / name
    if not path.is_file():
        raise ForecastError(f"NAB series not found: {path}")
    frame = pd.read_csv(path)
    stamps = pd.to_datetime(frame["timestamp"])
    seconds = stamps.to_numpy("datetime64[s]").astype(np.int64).astype(np.float64)
    times, values, observed = regularize(seconds, frame["value"].to_numpy(np.float64))
    return Series(name, times, values, observed, float(times[1] - times[0]))


def backtest_series(
    series: Series,
    make,
    *,
    horizon_s: float = 86_400.0,
    every_s: float = 3600.0,
    short_s: float = 7200.0,
    warmup_s: float = 86_400.0,
    level: float = 0.9,
) -> pd.DataFrame:
    """Rolling-origin backtest of a streaming forecaster on one series (one row per origin).

    Origins every `every_s` once `warmup_s` of history exists (a day: the forecaster must be
    useful after one); next-`horizon_s` forecasts, coverage also over the first `short_s`.
    """
    from detectors.forecast.backtest import online_backtest

    step = series.step
    frame = online_backtest(
        make(),
        series.times,
        series.values,
        horizon=max(1, round(horizon_s / step)),
        every=max(1, round(every_s / step)),
        warmup=max(1, round(warmup_s / step)),
        short=max(1, round(short_s / step)),
        observed=series.observed,
        level=level,
    )
    frame.insert(0, "series", series.name)
    return frame


def summarize_series(rows: pd.DataFrame) -> pd.DataFrame:
    """Per series: origins, coverage (whole horizon and short), median sMAPE, MAE ratios."""
    g = rows.groupby("series", sort=False)
    out = pd.DataFrame(
        {
            "origins": g.size(),
            "coverage": g["coverage"].mean(),
            "coverage_short": g["coverage_short"].mean(),
            "smape_median": g["smape"].median(),
            "mae_vs_daily_naive": g["mae"].sum() / g["mae_daily_naive"].sum(),
        }
    )
    weekly = rows.dropna(subset=["mae_weekly_naive"]).groupby("series", sort=False)
    out["mae_vs_weekly_naive"] = weekly["mae"].sum() / weekly["mae_weekly_naive"].sum()
    return out.round(3)
