"""`firebreak forecast`: forecast any recorded rate series, plot it, or backtest the models."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# the keys of detectors.forecast.registry.MODELS (kept here so --help stays fast; a test checks)
MODEL_NAMES = (
    "seasonal-profile",
    "seasonal-naive",
    "seasonal-naive-daily",
    "seasonal-naive-level",
    "holt-winters",
    "mstl",
    "holt-winters-conformal",
    "mstl-conformal",
)


def _read(args: argparse.Namespace):
    """Times (unix s) and values from a CSV with a time and a value column."""
    import pandas as pd

    from detectors.forecast.backtest import to_seconds
    from detectors.forecast.models import ForecastError

    path = Path(args.file)
    if not path.is_file():
        raise ForecastError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ForecastError(f"{path}: not a readable CSV: {exc}") from None
    for column in (args.time_column, args.value_column):
        if column not in frame.columns:
            raise ForecastError(
                f"{path}: no column {column!r} (columns: {', '.join(map(str, frame.columns))})"
            )
    values = pd.to_numeric(frame[args.value_column], errors="coerce").to_numpy(dtype=np.float64)
    return to_seconds(frame[args.time_column]), values


def _plot(path: Path, times, values, forecast, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = min(times.size, 4 * forecast.times.size + 1)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(times[-show:] / 3600.0, values[-show:], color="black", lw=1, label="history")
    hours = forecast.times / 3600.0
    ax.plot(hours, forecast.mean, color="tab:blue", lw=1.5, label="forecast")
    ax.fill_between(
        hours,
        forecast.lower,
        forecast.upper,
        color="tab:blue",
        alpha=0.25,
        label=f"{forecast.level:.0%} interval",
    )
    ax.set_xlabel("hours (unix time / 3600)")
    ax.set_ylabel("rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_forecast(args: argparse.Namespace) -> int:
    import pandas as pd

    from detectors.forecast.backtest import compare, summarize
    from detectors.forecast.models import DAY_S, ForecastError, check_series, period_steps
    from detectors.forecast.registry import MODELS, make_forecaster

    times, values = _read(args)
    times, values, step = check_series(times, values)
    if not 0 < args.level < 1:
        raise ForecastError(f"--level: must be in (0, 1), got {args.level}")
    if args.backtest:
        day = period_steps(DAY_S, step)
        horizon = args.horizon or day
        results = compare(
            dict(MODELS),
            times,
            values,
            horizon=horizon,
            step=day,
            min_history=14 * day,
            level=args.level,
        )
        if results.empty:
            raise ForecastError("series too short to backtest: need two weeks plus the horizon")
        print(summarize(results).to_string())
        return 0
    if not args.horizon or args.horizon < 1:
        raise ForecastError("--horizon is required (steps to forecast, >= 1) unless --backtest")
    model = make_forecaster(args.model).fit(times, values)
    forecast = model.predict(args.horizon, level=args.level)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "time": forecast.times,
            "mean": forecast.mean,
            "lower": forecast.lower,
            "upper": forecast.upper,
        }
    ).to_csv(out / "forecast.csv", index=False)
    _plot(out / "forecast.png", times, values, forecast, f"{Path(args.file).name}: {model.name}")
    print(f"wrote {out / 'forecast.csv'} and {out / 'forecast.png'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "forecast", help="forecast a recorded rate series (CSV) with intervals, or backtest"
    )
    p.add_argument("file", help="CSV with a time column (unix seconds or ISO) and a value column")
    p.add_argument("--horizon", type=int, default=None, help="steps to forecast")
    p.add_argument(
        "--model",
        default="seasonal-profile",
        choices=list(MODEL_NAMES),
        help="default seasonal-profile: useful after a day, intervals from its own errors",
    )
    p.add_argument("--time-column", default="timestamp")
    p.add_argument("--value-column", default="value")
    p.add_argument("--level", type=float, default=0.9, help="prediction interval level")
    p.add_argument("--out", default="forecast-out", help="directory for forecast.csv and the plot")
    p.add_argument(
        "--backtest", action="store_true", help="rolling-origin backtest table of all models"
    )
    p.set_defaults(func=cmd_forecast)
