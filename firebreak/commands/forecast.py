"""`firebreak forecast`: forecast any recorded rate series, plot it, or backtest the models.

Every bad input is refused before any work, naming the file, the column, the line and the
value (exit 2): a rate series that is missing, unreadable, has no time column, holds a
non-number, a NaN or a negative rate, runs backwards or irregularly, or is too short for
the model; a horizon outside 1..MAX_HORIZON; a level outside (0, 1). Outputs are written
under hidden names and renamed into place, so a failure never leaves half a forecast.
"""

from __future__ import annotations

import argparse
import os
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
MAX_HORIZON = 100_000
"""Longest forecast in steps: ten weeks of one-minute steps (more is a typo, not a plan)."""
TIME_COLUMNS = ("timestamp", "time", "ts", "datetime", "date_time", "date", "epoch", "t")
"""Names (any case) taken as the time column when --time-column is not given."""
VALUE_COLUMNS = ("value", "rate", "requests", "count")


def _error(message: str) -> Exception:
    """The project's input error (imported late: --help stays fast)."""
    from detectors.forecast.models import ForecastError

    return ForecastError(message)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pick_columns(path: Path, columns: list[str], args: argparse.Namespace) -> tuple[str, str]:
    """The time and value columns: as named, or found by their usual names."""
    listed = ", ".join(columns) or "none"
    lower = {c.strip().lower(): c for c in columns}
    if args.time_column is not None:
        if args.time_column not in columns:
            raise _error(
                f"{path}: no column {args.time_column!r} (--time-column); columns: {listed}"
            )
        time_col = args.time_column
    else:
        found = [lower[n] for n in TIME_COLUMNS if n in lower]
        if not found:
            raise _error(
                f"{path}: no time column (looked for {', '.join(TIME_COLUMNS)}); columns: "
                f"{listed}; name it with --time-column"
            )
        time_col = found[0]
    others = [c for c in columns if c != time_col]
    if args.value_column is not None:
        if args.value_column not in columns or args.value_column == time_col:
            raise _error(
                f"{path}: no value column {args.value_column!r} (--value-column); columns: {listed}"
            )
        return time_col, args.value_column
    named = [lower[n] for n in VALUE_COLUMNS if n in lower and lower[n] != time_col]
    if named:
        return time_col, named[0]
    if len(others) == 1:
        return time_col, others[0]
    raise _error(
        f"{path}: which column is the rate? columns besides {time_col!r}: "
        f"{', '.join(others) or 'none'}; name it with --value-column"
    )


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _line(i: int) -> int:
    """The file's line number of data row i (the header is line 1)."""
    return int(i) + 2


def _values(path: Path, column, name: str) -> np.ndarray:
    """Finite, non-negative rates, or an error naming the first bad line and its text."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        raw = column.iloc[bad[0]]
        if str(raw).strip() == "":
            what = "''"
            why = "is empty"
        else:
            what = repr(str(raw))
            why = "is not finite" if _is_float(str(raw)) else "is not a number"
        raise _error(
            f"{path}: column {name!r}, line {_line(bad[0])}: {what} {why} ({_rows(bad.size)} "
            "like it; a rate series needs a finite number on every row)"
        )
    negative = np.flatnonzero(numbers < 0)
    if negative.size:
        raise _error(
            f"{path}: column {name!r}, line {_line(negative[0])}: {numbers[negative[0]]:g} is "
            f"negative ({_rows(negative.size)} like it); a rate cannot be below zero"
        )
    return numbers


def _times(path: Path, column, name: str) -> np.ndarray:
    """Unix seconds from numbers or ISO date-times; an error names the first unreadable."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().mean() >= 0.5:  # a numeric column with a few bad cells
        seconds = numbers.to_numpy(dtype=np.float64)
    else:
        stamps = pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
        seconds = np.full(len(column), np.nan)
        ok = stamps.notna().to_numpy()
        epoch = pd.Timestamp(0, tz="UTC")
        seconds[ok] = ((stamps[ok] - epoch) / pd.Timedelta(seconds=1)).to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(seconds))
    if bad.size:
        raise _error(
            f"{path}: column {name!r}, line {_line(bad[0])}: {str(column.iloc[bad[0]])!r} is "
            "not a time (unix seconds or an ISO date-time)"
        )
    return seconds


def _regular(path: Path, times: np.ndarray, name: str) -> float:
    """The series' step: times must increase by one step throughout, a day a whole number."""
    from detectors.forecast.models import DAY_S, ForecastError, period_steps

    if times.size < 3:
        raise _error(f"{path}: {times.size} rows; a series needs at least 3 (more: see --help)")
    steps = np.diff(times)
    back = np.flatnonzero(steps <= 0)
    if back.size:
        i = back[0] + 1
        raise _error(
            f"{path}: column {name!r}, line {_line(i)}: time {times[i]:.0f} does not come after "
            f"line {_line(i - 1)}'s {times[i - 1]:.0f} (times must strictly increase)"
        )
    step = float(np.median(steps))
    off = np.flatnonzero(np.abs(steps - step) > 1e-6 * step)
    if off.size:
        i = off[0] + 1
        raise _error(
            f"{path}: column {name!r}, line {_line(i)}: a step of {steps[off[0]]:g} s where the "
            f"series steps {step:g} s (fill or resample gaps to a regular grid first)"
        )
    try:
        period_steps(DAY_S, step)
    except ForecastError:
        raise _error(
            f"{path}: a step of {step:g} s does not divide a day into whole steps of at least "
            "two (the models' daily season)"
        ) from None
    return step


def read_series(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, float]:
    """Times (unix s), rates and step from a CSV, every problem named by file and line."""
    import pandas as pd

    path = Path(args.file)
    if not path.exists():
        raise _error(f"{path}: no such file")
    if path.is_dir():
        raise _error(f"{path}: is a directory, expected a CSV file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise _error(f"{path}: empty file (expected a header and rows)") from None
    except UnicodeDecodeError:
        raise _error(f"{path}: not a text CSV (bytes that are not UTF-8)") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise _error(f"{path}: not a readable CSV: {str(exc).strip()}") from None
    except OSError as exc:
        raise _error(f"{path}: cannot read: {exc.strerror or exc}") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    time_col, value_col = _pick_columns(path, columns, args)
    if frame.empty:
        raise _error(f"{path}: a header but no rows")
    values = _values(path, frame[value_col], value_col)
    times = _times(path, frame[time_col], time_col)
    step = _regular(path, times, time_col)
    return times, values, step


def _check_out(text: str) -> Path:
    """--out must be creatable and writable: refused before any fitting, never after."""
    out = Path(text)
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise _error(f"--out: {probe} is a file, not a directory ({out} cannot be made)")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise _error(f"--out: {probe} is not writable ({out} cannot be written)")
    made = [p for p in (out, *out.parents) if not p.exists()]
    try:  # make it now (and undo) so a refusal comes before the fitting, not after
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _error(f"--out: cannot make {out}: {exc.strerror or exc}") from None
    for path in made:  # deepest first
        path.rmdir()
    return out


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
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _write(out: Path, times, values, forecast, title: str) -> None:
    """forecast.csv and forecast.png, each written hidden and renamed once whole."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {"time": forecast.times, "mean": forecast.mean, "lower": forecast.lower,
         "upper": forecast.upper}
    )  # fmt: skip
    parts = ((".forecast.csv.tmp", "forecast.csv"), (".forecast.png.tmp", "forecast.png"))
    try:
        table.to_csv(out / parts[0][0], index=False)
        _plot(out / parts[1][0], times, values, forecast, title)
        for hidden, name in parts:
            os.replace(out / hidden, out / name)
    finally:
        for hidden, _ in parts:
            (out / hidden).unlink(missing_ok=True)


def cmd_forecast(args: argparse.Namespace) -> int:
    from detectors.forecast.backtest import compare, summarize
    from detectors.forecast.models import DAY_S, ForecastError, period_steps
    from detectors.forecast.registry import MODELS, make_forecaster

    path = Path(args.file)
    if not args.backtest and args.horizon is None:
        raise _error("--horizon: required (steps to forecast, 1 to 100,000) unless --backtest")
    out = None if args.backtest else _check_out(args.out)
    times, values, step = read_series(args)
    if args.backtest:
        day = period_steps(DAY_S, step)
        horizon = args.horizon or day
        need = 14 * day + horizon
        if values.size < need:
            raise _error(
                f"{path}: {values.size} rows ({values.size * step / DAY_S:.2f} days) are too few "
                f"to backtest: need {need} (two weeks of history plus the horizon, {horizon})"
            )
        try:
            results = compare(
                dict(MODELS), times, values, horizon=horizon, step=day,
                min_history=14 * day, level=args.level,
            )  # fmt: skip
        except ForecastError as exc:
            raise _error(f"{path}: {exc}") from None
        print(summarize(results).to_string())
        return 0
    try:
        model = make_forecaster(args.model).fit(times, values)
        if hasattr(model, "is_ready") and not model.is_ready() and not values.any():
            raise ForecastError(
                f"every rate is 0: {args.model} scales its errors by the traffic it has seen "
                "and has none (a series of zeros forecasts itself; or use "
                "--model seasonal-naive-daily)"
            )
        if hasattr(model, "is_ready") and not model.is_ready():
            raise ForecastError(
                f"{values.size} rows ({values.size * step / 3600:.1f} h) are too few for "
                f"{args.model}: it has not measured its own errors yet (a day is plenty)"
            )
        forecast = model.predict(args.horizon, level=args.level)
    except ForecastError as exc:
        raise _error(f"{path}: {exc}") from None
    _write(out, times, values, forecast, f"{path.name}: {model.name}")
    print(f"wrote {out / 'forecast.csv'} and {out / 'forecast.png'}")
    return 0


def register(subparsers) -> None:
    from firebreak.argtypes import int_between, open_fraction

    p = subparsers.add_parser(
        "forecast", help="forecast a recorded rate series (CSV) with intervals, or backtest"
    )
    p.add_argument(
        "file",
        help="CSV with a time column (unix seconds or ISO date-times, one regular step) and a "
        "non-negative rate column",
    )
    p.add_argument(
        "--horizon",
        type=int_between(1, MAX_HORIZON),
        default=None,
        help=f"steps to forecast (1 to {MAX_HORIZON:,}; with --backtest default a day)",
    )
    p.add_argument(
        "--model",
        default="seasonal-profile",
        choices=list(MODEL_NAMES),
        help="default seasonal-profile: useful after a day, intervals from its own errors",
    )
    p.add_argument(
        "--time-column",
        default=None,
        help=f"default: the first column named one of {', '.join(TIME_COLUMNS)} (any case)",
    )
    p.add_argument(
        "--value-column",
        default=None,
        help="default: 'value' (or rate, requests, count), else the only other column",
    )
    p.add_argument(
        "--level", type=open_fraction, default=0.9, help="prediction interval level, in (0, 1)"
    )
    p.add_argument("--out", default="forecast-out", help="directory for forecast.csv and the plot")
    p.add_argument(
        "--backtest", action="store_true", help="rolling-origin backtest table of all models"
    )
    p.set_defaults(func=cmd_forecast)
