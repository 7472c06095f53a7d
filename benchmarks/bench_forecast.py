"""`python -m benchmarks.bench_forecast`: forecasters on real traffic, and their cost.

Three parts (all by default, or pick with --parts):

- `real`: the streaming seasonal profile in a rolling backtest on every NAB traffic series
  (origins hourly after one day of history, next-day forecasts): 90% interval coverage over
  the day and over its first two hours, median sMAPE, MAE against the daily and weekly
  naive from the same origins, and accuracy by history length (does it improve with more?).
  Development and held-out series are reported apart (detectors.forecast.traffic).
- `classic`: every model next-day from each midnight on NYC taxi's ordinary weeks and on a
  twin workload with declared campaigns (the older benchmark), each sMAPE also as a ratio
  to the weekly seasonal naive measured in the same run.
- `scale`: each model fitted on a month of 1-minute data, then a day forecast, each in a
  fresh process: wall seconds and peak resident memory (the issue's bound: 60 s, 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.forecast import traffic
from detectors.forecast.backtest import nyc_taxi_backtest, summarize, twin_backtest
from detectors.forecast.registry import MODELS

PARTS = ("real", "classic", "scale")
SCALE_DAYS = 30
SCALE_STEP = 60.0
BOUND_S, BOUND_MIB = 60.0, 1024.0


# --------------------------------------------------------------------------- real traffic
def real(out: Path | None, parts: dict[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
    """The rolling backtest of the default forecaster on every NAB traffic series (or the
    named `parts`: {"development": names, "held-out": names})."""
    from detectors.forecast.profile import SeasonalProfile

    if not traffic.NAB_ROOT.is_dir():
        print(f"NAB corpus not found at {traffic.NAB_ROOT}: skipping the real-traffic part")
        return pd.DataFrame()
    frames = []
    start = time.perf_counter()
    parts = parts or {"development": traffic.DEVELOPMENT, "held-out": traffic.HELD_OUT}
    for part, names in parts.items():
        for name in names:
            rows = traffic.backtest_series(traffic.load(name), SeasonalProfile)
            rows.insert(1, "part", part)
            frames.append(rows)
    rows = pd.concat(frames, ignore_index=True)
    table = traffic.summarize_series(rows)
    table.insert(0, "part", rows.groupby("series", sort=False)["part"].first())
    table["in_band"] = table["coverage"].between(0.85, 0.95)
    wall = time.perf_counter() - start
    print(f"\nNAB traffic, rolling next-day backtest of seasonal-profile (wall {wall:.0f} s)")
    print(table.to_string())
    for part in parts:
        sel = table[table.part == part]
        print(
            f"{part}: coverage {sel.coverage.min():.3f}-{sel.coverage.max():.3f}, "
            f"{int(sel.in_band.sum())}/{len(sel)} series in [0.85, 0.95]; MAE vs daily "
            f"naive (geometric mean) {np.exp(np.log(sel.mae_vs_daily_naive).mean()):.3f}"
        )
    by_age = _by_history(rows)
    print("\nby history at the origin (all series; MAE over the daily naive's, same origins)")
    print(by_age.to_string())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "forecast_nab_traffic.csv")
        by_age.to_csv(out / "forecast_by_history.csv")
    return table


def _by_history(rows: pd.DataFrame) -> pd.DataFrame:
    bins = [1, 2, 4, 7, 14, 28, np.inf]
    labels = ["1-2 d", "2-4 d", "4-7 d", "7-14 d", "14-28 d", "28+ d"]
    age = pd.cut(rows["history_days"], bins, right=False, labels=labels)
    g = rows.groupby(age, observed=True)
    return pd.DataFrame(
        {
            "origins": g.size(),
            "mae_vs_daily_naive": g["mae"].sum() / g["mae_daily_naive"].sum(),
            "coverage": g["coverage"].mean(),
        }
    ).round(3)


# --------------------------------------------------------------------------- classic
def _table(results: pd.DataFrame, wall: float) -> pd.DataFrame:
    table = summarize(results)
    base = table.loc["seasonal-naive", "smape_median"]
    table["vs_naive"] = (table["smape_median"] / base).round(3)
    table["width"] = results.groupby("forecaster", sort=False)["width"].mean().round(2)
    table.attrs["wall_s"] = wall
    return table


def classic(models: list[str], out: Path | None) -> dict[str, pd.DataFrame]:
    """The taxi and twin next-day backtests of every model (refits at each midnight)."""
    factories = {name: MODELS[name] for name in models}
    tables = {}
    if traffic.NAB_ROOT.is_dir():
        start = time.perf_counter()
        taxi = nyc_taxi_backtest(traffic.NAB_ROOT, factories)
        tables["nyc-taxi"] = _table(taxi, time.perf_counter() - start)
    start = time.perf_counter()
    twin = twin_backtest(factories)
    tables["twin"] = _table(twin, time.perf_counter() - start)
    for name, table in tables.items():
        print(f"\n{name} (wall {table.attrs['wall_s']:.1f} s)")
        print(table.to_string())
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            table.to_csv(out / f"forecast_{name}.csv")
    return tables


# --------------------------------------------------------------------------- scale
def scale_series(days: int = SCALE_DAYS, step: float = SCALE_STEP, seed: int = 0):
    """A month of 1-minute requests/s: daily and weekly shape, noise, a level shift."""
    n = int(days * 86_400 / step)
    t = 1.4e9 + np.arange(n) * step
    hour = (t / 3600) % 24
    weekend = ((t // 86_400) % 7) >= 5
    rng = np.random.default_rng(seed)
    shape = (1 + 0.6 * np.cos(2 * np.pi * (hour - 19) / 24)) * np.where(weekend, 0.7, 1.0)
    level = np.where(np.arange(n) > n // 2, 1.3, 1.0)
    return t, 200 * shape * level * np.exp(0.1 * rng.standard_normal(n))


def _scale_child(name: str) -> None:
    """In a fresh process: fit one model on the month, forecast a day, print JSON."""
    t, y = scale_series()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    model = MODELS[name]().fit(t, y)
    forecast = model.predict(1440, level=0.9)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ok = bool(np.isfinite(forecast.upper).all())
    print(json.dumps({"model": name, "wall_s": wall, "peak_mib": peak, "base_mib": before,
                      "finite": ok}))  # fmt: skip


def scale(models: list[str], out: Path | None, timeout_s: float = 300.0) -> pd.DataFrame:
    """Each model in its own process: seconds and peak memory on a month of minutes."""
    rows = []
    for name in models:
        argv = [sys.executable, "-m", "benchmarks.bench_forecast", "--scale-child", name]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rows.append({"model": name, "wall_s": np.inf, "peak_mib": np.nan})
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            rows.append({"model": name, "wall_s": np.nan, "peak_mib": np.nan})
            continue
        rows.append(json.loads(lines[-1]))
    table = pd.DataFrame(rows).set_index("model")
    table["within_bounds"] = (table["wall_s"] <= BOUND_S) & (table["peak_mib"] <= BOUND_MIB)
    n = int(SCALE_DAYS * 86_400 / SCALE_STEP)
    print(
        f"\nscale: fit on {n} one-minute points ({SCALE_DAYS} days) + a 1440-step forecast, "
        f"one fresh process per model; peak_mib is the whole process (base_mib: after imports)"
    )
    print(table.round(2).to_string())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "forecast_scale.csv")
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--out", type=Path, default=None, help="write one CSV per table here")
    p.add_argument("--scale-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.scale_child:
        _scale_child(args.scale_child)
        return
    if "seasonal-naive" not in args.models:
        args.models.insert(0, "seasonal-naive")
    if "real" in args.parts:
        real(args.out)
    if "classic" in args.parts:
        classic(args.models, args.out)
    if "scale" in args.parts:
        scale(args.models, args.out)


if __name__ == "__main__":
    main()
