"""External traffic: expected arrival-rate curves per request class, and noisy arrivals from them.

Two steps, kept apart so forecasters and tests can see the noiseless truth:

* `rate_curves` is deterministic: the rate each class *would* have at the start of each tick
  (seasonality × trend × flash crowds × calendar events, or a replayed recording × events).
* `sample_arrivals` turns those rates into counts per tick with autocorrelated multiplicative
  noise and Poisson sampling, using only the generator passed in (same seed, same arrivals).

Shapes, all multiplicative and all equal to 1 when their parameters are zero:

* daily: ``1 + daily_amplitude · cos(2π (h − peak_hour) / 24)``, h the hour of day
  (``start_hour`` at t = 0); highest at ``peak_hour``, lowest 12 h later, mean 1 over a day.
* weekly: 1 on weekdays, ``1 − weekly_amplitude`` on Saturday and Sunday, joined by raised-cosine
  steps ``WEEKEND_TRANSITION_S`` wide centred on midnight Friday→Saturday and Sunday→Monday,
  so the class rate is the weekday rate and the curve has no jumps.
* trend: ``(1 + trend_per_day) ** (t / 86400)``.
* flash crowds and calendar events: ``1 + (multiplier − 1) · envelope``, the envelope a trapezoid
  that ramps linearly from 0 to 1 over ``ramp_s`` after the start and back to 0 over ``ramp_s``
  before the end (ramps shortened to half the duration if they would overlap).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from twin.errors import ScenarioError
from twin.scenario.schema import CalendarEvent, FlashCrowd, Replay, Workload

DAY_S = 86_400.0
WEEKEND_TRANSITION_S = 6 * 3600.0
"""Width of the smooth step into and out of the weekend (centred on midnight)."""
NOISE_CORRELATION_S = 60.0
"""Correlation time of the traffic noise: log-noise correlation between ticks Δt apart is
exp(−Δt / NOISE_CORRELATION_S), so bursts last about a minute, like real traffic wobble."""
AR1_BLOCK_GAIN = 1e8
"""Largest φ^−j the blocked AR(1) scan multiplies by: keeps it in range and accurate (~1e−13)."""


# --------------------------------------------------------------------------- rate curves


def rate_curves(workload: Workload, n_ticks: int, tick: float) -> np.ndarray:
    """Expected external arrival rate (req/s), shape (n_ticks, n_classes), at t = i·tick.

    Deterministic, so forecasters, plots and the flow and request fidelities share one truth.
    """
    if n_ticks < 0:
        raise ValueError(f"n_ticks must be >= 0, got {n_ticks}")
    if not tick > 0:
        raise ValueError(f"tick must be > 0, got {tick}")
    t = np.arange(n_ticks, dtype=np.float64) * tick
    if workload.replay is not None:
        shape = replay_shape(workload.replay, t)
    else:
        shape = seasonal_shape(workload, t) * trend_factor(workload.trend_per_day, t)
    base = np.array([c.rate for c in workload.classes], dtype=np.float64)
    rates = shape[:, None] * base[None, :]
    names = [c.name for c in workload.classes]
    for field, events in (("flash_crowds", workload.flash_crowds), ("calendar", workload.calendar)):
        for i, event in enumerate(events):
            _apply_event(rates, t, tick, event, _class_columns(event, names, f"{field}[{i}]"))
    return rates


def seasonal_shape(workload: Workload, t: np.ndarray) -> np.ndarray:
    """Daily × weekly shape at times t (s); see the module docstring for the formulas."""
    out = np.ones_like(t)
    offset_s = workload.start_hour * 3600.0
    if workload.daily_amplitude > 0:
        hour = (t + offset_s) / 3600.0
        out *= 1.0 + workload.daily_amplitude * np.cos(
            2.0 * np.pi * (hour - workload.peak_hour) / 24.0
        )
    if workload.weekly_amplitude > 0:
        day = workload.start_weekday + (t + offset_s) / DAY_S  # 0 = Monday 00:00
        out *= 1.0 - workload.weekly_amplitude * weekend_weight(day)
    return out


def weekend_weight(day: np.ndarray) -> np.ndarray:
    """1 during Saturday and Sunday, 0 on weekdays, smooth raised-cosine steps at midnight.

    `day` counts days since a Monday 00:00 (any real number; the week wraps).
    """
    # Signed distance (days) from Sunday 00:00, the weekend's centre, wrapped into [-3.5, 3.5).
    u = np.mod(day - 6.0 + 3.5, 7.0) - 3.5
    width = WEEKEND_TRANSITION_S / DAY_S
    s = np.clip((1.0 - np.abs(u)) / width + 0.5, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * s)


def trend_factor(trend_per_day: float, t: np.ndarray) -> np.ndarray:
    """Compound growth (1 + trend_per_day)^(t / 1 day)."""
    if trend_per_day == 0:
        return np.ones_like(t)
    return np.exp(math.log1p(trend_per_day) * (t / DAY_S))


def event_envelope(t: np.ndarray, start: float, duration: float, ramp_s: float) -> np.ndarray:
    """Trapezoid in [0, 1]: linear ramp up after `start`, linear ramp down before the end."""
    end = start + duration
    ramp = min(ramp_s, duration / 2.0)
    inside = (t >= start) & (t < end)
    if ramp <= 0:
        return inside.astype(np.float64)
    env = np.minimum(t - start, end - t) / ramp
    return np.where(inside, np.clip(env, 0.0, 1.0), 0.0)


def _apply_event(
    rates: np.ndarray,
    t: np.ndarray,
    tick: float,
    event: FlashCrowd | CalendarEvent,
    columns: list[int],
) -> None:
    """Multiply the affected window and classes in place; untouched ticks cost nothing."""
    factor = event.multiplier if isinstance(event, FlashCrowd) else event.lift
    if factor == 1.0 or not columns:
        return
    lo = max(0, math.ceil(event.start / tick) - 1)
    hi = min(len(t), math.floor((event.start + event.duration) / tick) + 2)
    if lo >= hi:
        return
    env = event_envelope(t[lo:hi], event.start, event.duration, event.ramp_s)
    mult = 1.0 + (factor - 1.0) * env
    if len(columns) == rates.shape[1]:
        rates[lo:hi] *= mult[:, None]
    else:
        rates[lo:hi, columns] *= mult[:, None]


def _class_columns(
    event: FlashCrowd | CalendarEvent, names: Sequence[str], where: str
) -> list[int]:
    """Column indices of the classes an event touches (None = all of them)."""
    if event.classes is None:
        return list(range(len(names)))
    cols = []
    for name in event.classes:
        if name not in names:
            raise ScenarioError(f"workload.{where}.classes: unknown request class {name!r}")
        cols.append(names.index(name))
    return sorted(set(cols))


# --------------------------------------------------------------------------- replay


def replay_shape(replay: Replay, t: np.ndarray) -> np.ndarray:
    """The recorded series at times t (s): linear interpolation, repeating from its start.

    The series occupies [0, period) with period = last sample time + typical spacing, and the
    last sample is joined linearly to the first of the next repetition, so loops are seamless.
    """
    times, values, period = load_replay(replay)
    tau = np.mod(t, period)
    return np.interp(tau, np.append(times, period), np.append(values, values[0]))


def load_replay(replay: Replay) -> tuple[np.ndarray, np.ndarray, float]:
    """(times from 0 in s, values — normalised as asked, period in s) of a replay CSV.

    Cached on the file's identity and modification time: sweeps and forks re-read nothing.
    """
    path = Path(replay.file)
    try:
        stat = path.stat()
    except OSError:
        raise ScenarioError(f"workload.replay.file: file not found: {replay.file!r}") from None
    if not path.is_file():
        raise ScenarioError(f"workload.replay.file: not a file: {replay.file!r}")
    return _load_replay_cached(replay, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _load_replay_cached(
    replay: Replay, _mtime_ns: int, _size: int
) -> tuple[np.ndarray, np.ndarray, float]:
    frame = _read_csv(replay.file)
    if replay.value_column not in frame.columns:
        raise ScenarioError(
            f"workload.replay.value_column: no column {replay.value_column!r} in "
            f"{replay.file!r} (columns: {', '.join(map(str, frame.columns))})"
        )
    if len(frame) < 2:
        raise ScenarioError(
            f"workload.replay.file: {replay.file!r} has {len(frame)} data row(s), need at least 2"
        )
    values = _values(frame[replay.value_column], replay)
    times = _times(frame, replay)
    spacing = float(np.median(np.diff(times)))
    if replay.scale_by != "none":
        scale = float(values.mean() if replay.scale_by == "mean" else values.max())
        if scale <= 0:
            raise ScenarioError(
                f"workload.replay.value_column: column {replay.value_column!r} in "
                f"{replay.file!r} is all zero, cannot normalize by its {replay.scale_by}"
            )
        values = values / scale
    times.setflags(write=False)
    values.setflags(write=False)
    return times, values, float(times[-1] + spacing)


def _read_csv(file: str) -> pd.DataFrame:
    try:
        return pd.read_csv(file, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScenarioError(f"workload.replay.file: cannot read {file!r} as CSV: {first}") from None


def _values(column: pd.Series, replay: Replay) -> np.ndarray:
    """Finite, non-negative floats, or an error naming the first bad cell."""
    where = f"workload.replay.value_column: column {replay.value_column!r} in {replay.file!r}"
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        i = int(np.argmax(bad))
        cell = column.iloc[i]
        what = "missing value" if pd.isna(cell) else f"non-numeric value {cell!r}"
        raise ScenarioError(f"{where}: {what} at line {i + 2}")
    negative = numbers < 0
    if negative.any():
        i = int(np.argmax(negative))
        raise ScenarioError(f"{where}: negative value {numbers[i]:g} at line {i + 2}")
    return numbers


def _times(frame: pd.DataFrame, replay: Replay) -> np.ndarray:
    """Seconds from the first sample: from the time column if present, else step_s spacing."""
    name = replay.time_column
    if name is None or name not in frame.columns:
        if replay.step_s is None:
            what = (
                "no time column and no step_s"
                if name is None
                else f"no column {name!r} in {replay.file!r} "
                f"(columns: {', '.join(map(str, frame.columns))}) and no step_s"
            )
            raise ScenarioError(f"workload.replay.time_column: {what}")
        return np.arange(len(frame), dtype=np.float64) * replay.step_s
    column = frame[name]
    where = f"workload.replay.time_column: column {name!r} in {replay.file!r}"
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(numbers)
    if finite.all():
        seconds = numbers - numbers[0]
    elif finite.any():  # numeric times with a stray entry: name that entry, not the first
        i = int(np.argmax(~finite))
        raise ScenarioError(
            f"{where}: {column.iloc[i]!r} at line {i + 2} is not a number (the column's "
            "other times are numbers)"
        )
    else:
        stamps = _datetimes(column)
        bad = stamps.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise ScenarioError(
                f"{where}: {column.iloc[i]!r} at line {i + 2} is neither a number nor a date-time"
            )
        seconds = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy(dtype=np.float64)
    steps = np.diff(seconds)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise ScenarioError(
            f"{where}: times must increase, but {column.iloc[i]!r} at line {i + 2} "
            f"does not come after {column.iloc[i - 1]!r}"
        )
    return seconds


def _datetimes(column: pd.Series) -> pd.Series:
    """Parse date-times: ISO 8601 (NAB's format) fast, else cell by cell (slower, lenient)."""
    stamps = pd.to_datetime(column, errors="coerce", format="ISO8601")
    if stamps.isna().any():
        stamps = pd.to_datetime(column, errors="coerce", format="mixed")
    return stamps


# --------------------------------------------------------------------------- arrivals


def sample_arrivals(
    rates: np.ndarray, noise: float, tick: float, rng: np.random.Generator
) -> np.ndarray:
    """Arrivals per tick (float counts, same shape as `rates`): Poisson(rate · tick · noise).

    The noise is a mean-one lognormal with standard deviation `noise`, autocorrelated along
    time (AR(1) in log space, correlation time NOISE_CORRELATION_S) and independent per class,
    so it wobbles like real traffic and the expected count stays rate · tick.
    """
    return sample_intensity_and_arrivals(rates, noise, tick, rng)[1]


def sample_intensity_and_arrivals(
    rates: np.ndarray, noise: float, tick: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(expected count per tick, arrivals per tick): the Poisson intensity with its noise, and
    the counts `sample_arrivals` draws from it (the same draws from the same generator). The
    flow model's queueing formulas need the intensity, not one tick's count of it."""
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim not in (1, 2):
        raise ValueError(f"rates must be (n_ticks,) or (n_ticks, n_classes), got {rates.shape}")
    if not tick > 0:
        raise ValueError(f"tick must be > 0, got {tick}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if (rates < 0).any() or not np.isfinite(rates).all():
        raise ValueError("rates must be finite and non-negative")
    lam = rates * tick
    if noise > 0 and lam.size:
        lam *= lognormal_ar1(lam.shape, noise, tick, rng)
    return lam, rng.poisson(lam).astype(np.float64)


def lognormal_ar1(
    shape: tuple[int, ...], sd: float, tick: float, rng: np.random.Generator
) -> np.ndarray:
    """Mean-one lognormal multipliers with sd `sd`, AR(1)-correlated along axis 0.

    Stationary from the first tick: log-multiplier ~ N(−σ²/2, σ²) with σ² = ln(1 + sd²).
    """
    sigma = math.sqrt(math.log1p(sd * sd))
    phi = math.exp(-tick / NOISE_CORRELATION_S)
    shocks = rng.standard_normal(shape)
    x = ar1(shocks.reshape(shape[0], -1), phi).reshape(shape)
    x *= sigma
    x -= 0.5 * sigma * sigma
    return np.exp(x, out=x)


def ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    """Stationary unit-variance AR(1) down the rows of (n, m) standard-normal shocks.

    x[0] = e[0], x[i] = φ·x[i−1] + √(1−φ²)·e[i]. Vectorised without a per-tick loop (no scipy):
    within blocks of L rows, x = φ^j · cumsum(φ^−k · innovation) with φ^−L bounded so nothing
    overflows; each block then adds φ^(j+1) × the previous block's last value, a carry that is
    itself an AR(1) with coefficient φ^L ≤ AR1_BLOCK_GAIN⁻¹, summed exactly to float precision
    in a few shifted adds.
    """
    n, m = shocks.shape
    if n == 0 or phi < 1e-300:
        return shocks.astype(np.float64, copy=True)
    z = shocks * math.sqrt(1.0 - phi * phi)
    z[0] = shocks[0]
    block = n if phi == 1.0 else max(1, min(n, int(math.log(AR1_BLOCK_GAIN) / -math.log(phi))))
    n_blocks = -(-n // block)
    if n_blocks * block != n:
        z = np.concatenate([z, np.zeros((n_blocks * block - n, m))])
    z = z.reshape(n_blocks, block, m)
    j = np.arange(block, dtype=np.float64)[None, :, None]
    z *= phi**-j
    y = np.cumsum(z, axis=1, out=z)
    y *= phi**j
    if n_blocks > 1:
        last = y[:, -1, :]
        carry = last.copy()  # carry[b] = x at the end of block b
        gain = phi**block
        terms = min(n_blocks - 1, math.ceil(math.log(1e-20) / math.log(gain)) if gain < 1 else n)
        for k in range(1, terms + 1):
            carry[k:] += gain**k * last[:-k]
        y[1:] += phi ** (j + 1) * carry[:-1, None, :]
    return y.reshape(n_blocks * block, m)[:n]
