"""Forecasters behind the `Forecaster` protocol: seasonal naive, Holt-Winters (ETS), MSTL.

All share one calendar mechanism: declared events are masked out of the history (filled with
the same phase one season earlier), the model is fitted on that clean baseline, and each past
event's lift is the ratio of actuals to the baseline while it lasted. A future event of the
same name (else the same kind) multiplies the forecast by the mean lift, and the interval is
widened by the spread of the lifts, so an uncertain campaign gets more headroom.

Everything is deterministic: no random draws (intervals are empirical or analytic).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.stats import norm

from detectors.forecast.base import Event, Forecast
from twin.errors import FirebreakError

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
LIFT_SPREAD_Z = 1.645
"""Lift standard deviations added to the interval on each side (a 90% normal band)."""
SINGLE_LIFT_SD = 0.1
"""Relative lift uncertainty assumed when only one past occurrence is known."""


class ForecastError(FirebreakError):
    """A series a forecaster cannot use: too short, irregular, non-finite, or not fitted."""


# --------------------------------------------------------------------------- validation


def check_series(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Validate a rate series and return (times, values, step) as floats."""
    t = np.asarray(times, dtype=np.float64).ravel()
    y = np.asarray(values, dtype=np.float64).ravel()
    if t.shape != y.shape:
        raise ForecastError(f"times and values differ in length: {t.size} vs {y.size}")
    if t.size < 3:
        raise ForecastError(f"series too short: {t.size} points (need at least 3)")
    if not np.isfinite(t).all():
        raise ForecastError("times contain NaN or infinite values")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ForecastError(
            f"values contain {bad.size} NaN or infinite entries (first at index {bad[0]})"
        )
    steps = np.diff(t)
    step = float(np.median(steps))
    if step <= 0:
        raise ForecastError("times must be strictly increasing")
    off = np.flatnonzero(np.abs(steps - step) > 1e-6 * step)
    if off.size:
        i = off[0]
        raise ForecastError(
            f"irregular time steps: step {step:g} s expected, got {steps[i]:g} s "
            f"between index {i} and {i + 1}"
        )
    return t, y, step


def period_steps(seconds: float, step: float) -> int:
    """Number of steps in a season (a day or a week), which must be a whole number."""
    m = seconds / step
    if abs(m - round(m)) > 1e-6 or round(m) < 2:
        raise ForecastError(f"a season of {seconds:g} s is not a whole number of {step:g} s steps")
    return int(round(m))


# --------------------------------------------------------------------------- calendar


def event_mask(times: np.ndarray, events: Sequence[Event]) -> list[np.ndarray]:
    """Boolean mask per event: ticks inside [start, end)."""
    return [(times >= e.start) & (times < e.end) for e in events]


def fill_events(values: np.ndarray, mask: np.ndarray, periods: Sequence[int]) -> np.ndarray:
    """The series with masked ticks replaced by the nearest unmasked tick of the same phase.

    Phases are tried season by season (e.g. weekly, then daily) so a short history still
    gets a baseline; a tick with no unmasked twin keeps its value (lift 1 there).
    """
    out = values.copy()
    n = values.size
    for i in np.flatnonzero(mask):
        for m in periods:
            found = next(
                (
                    j
                    for k in range(1, n // m + 2)
                    for j in (i - k * m, i + k * m)
                    if 0 <= j < n and not mask[j]
                ),
                None,
            )
            if found is not None:
                out[i] = values[found]
                break
    return out


class Calendar:
    """Lifts of declared events learned from past occurrences, applied to future ones."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[float]] = {}
        self.by_kind: dict[str, list[float]] = {}

    def learn(
        self, times: np.ndarray, actual: np.ndarray, baseline: np.ndarray, events: Sequence[Event]
    ) -> None:
        """Record actual/baseline over each event that lies in the history."""
        for event, inside in zip(events, event_mask(times, events), strict=True):
            if not inside.any():
                continue
            base = float(np.sum(baseline[inside]))
            if base <= 0:
                continue
            self.add(event, float(np.sum(actual[inside])) / base)

    def add(self, event: Event, lift: float) -> None:
        """Record one past occurrence's lift (actual over what was expected without it)."""
        self.by_name.setdefault(event.name, []).append(lift)
        self.by_kind.setdefault(event.kind, []).append(lift)

    def lift(self, event: Event) -> tuple[float, float] | None:
        """(mean lift, sd) for an event, by name first, else by kind; None if never seen."""
        lifts = self.by_name.get(event.name) or self.by_kind.get(event.kind)
        if not lifts:
            return None
        mean = float(np.mean(lifts))
        sd = float(np.std(lifts, ddof=1)) if len(lifts) > 1 else SINGLE_LIFT_SD * abs(mean - 1)
        return mean, sd

    def apply(self, forecast: Forecast, events: Sequence[Event]) -> Forecast:
        """Scale the forecast inside known future events; widen by the lift's spread."""
        mean, lower, upper = forecast.mean.copy(), forecast.lower.copy(), forecast.upper.copy()
        for event, inside in zip(events, event_mask(forecast.times, events), strict=True):
            learned = self.lift(event) if inside.any() else None
            if learned is None:
                continue
            lift, sd = learned
            mean[inside] *= lift
            lower[inside] *= max(lift - LIFT_SPREAD_Z * sd, 0.0)
            upper[inside] *= lift + LIFT_SPREAD_Z * sd
        return Forecast(forecast.times, mean, lower, upper, forecast.level)


# --------------------------------------------------------------------------- base


class _Base:
    """Shared fit/predict: validation, calendar masking and lifts; subclasses model a baseline."""

    name = "base"
    min_periods = 2

    def __init__(self) -> None:
        self._fitted = False

    def _season(self, step: float) -> int:
        raise NotImplementedError

    def _fit_baseline(self, y: np.ndarray, step: float) -> None:
        raise NotImplementedError

    def _predict_baseline(
        self, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def fit(self, times: np.ndarray, values: np.ndarray, events: Sequence[Event] = ()) -> _Base:
        """Fit on a regular series; past declared events teach the calendar their lifts."""
        t, y, step = check_series(times, values)
        m = self._season(step)
        need = self.min_periods * m
        if y.size < need:
            raise ForecastError(
                f"{self.name}: series too short: {y.size} points, need at least {need} "
                f"({self.min_periods} seasons of {m} steps)"
            )
        masks = event_mask(t, events)
        any_event = np.logical_or.reduce(masks) if masks else np.zeros(y.size, dtype=bool)
        periods = sorted({m, period_steps(DAY_S, step)}, reverse=True)
        clean = fill_events(y, any_event, periods) if any_event.any() else y
        self.calendar = Calendar()
        self.calendar.learn(t, y, clean, events)
        self.times_, self.values_, self.step_ = t, clean, step
        self._fit_baseline(clean, step)
        self._fitted = True
        return self

    def predict(self, horizon: int, level: float = 0.9, events: Sequence[Event] = ()) -> Forecast:
        """Forecast `horizon` steps after the history, with a central `level` interval."""
        if not self._fitted:
            raise ForecastError(f"{self.name}: predict called before fit")
        if horizon < 1:
            raise ForecastError(f"horizon must be >= 1, got {horizon}")
        if not 0 < level < 1:
            raise ForecastError(f"level must be in (0, 1), got {level}")
        times = self.times_[-1] + self.step_ * np.arange(1, horizon + 1)
        mean, lower, upper = self._predict_baseline(horizon, level)
        base = Forecast(times, mean, np.minimum(lower, mean), np.maximum(upper, mean), level)
        return self.calendar.apply(base, events)


def _season_seconds(period: str | float) -> float:
    """'daily', 'weekly' or a season length in seconds (e.g. a short test season)."""
    if period == "daily":
        return DAY_S
    if period == "weekly":
        return WEEK_S
    if isinstance(period, int | float) and not isinstance(period, bool) and period > 0:
        return float(period)
    raise ForecastError(f"period must be 'daily', 'weekly' or seconds > 0, got {period!r}")


# --------------------------------------------------------------------------- seasonal naive


class SeasonalNaive(_Base):
    """Repeat the last season; intervals from past seasonal-naive errors at each horizon.

    The error at horizon h is y[t+h] − y[t+h−k·m] with k = ceil(h/m), so its empirical
    distribution over the history is the distribution of k-season relative differences.
    """

    def __init__(
        self, period: Literal["daily", "weekly"] | float = "weekly", min_periods: int = 2
    ) -> None:
        super().__init__()
        self.period = period
        self.season_s = _season_seconds(period)
        if min_periods < 1:
            raise ForecastError(f"min_periods must be >= 1, got {min_periods}")
        self.min_periods = min_periods
        label = period if isinstance(period, str) else f"{self.season_s:g}s"
        self.name = f"seasonal-naive-{label}"

    def _season(self, step: float) -> int:
        return period_steps(self.season_s, step)

    def _fit_baseline(self, y: np.ndarray, step: float) -> None:
        self.m_ = self._season(step)

    def _predict_baseline(
        self, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, m, n = self.values_, self.m_, self.values_.size
        h = np.arange(1, horizon + 1)
        k = np.ceil(h / m).astype(int)
        mean = y[n + h - 1 - k * m]
        lower, upper = np.empty(horizon), np.empty(horizon)
        alpha = (1 - level) / 2
        for kk in np.unique(k):
            lag = kk * m
            if lag >= n:
                lag = (n - 1) // m * m  # as far back as the history allows
            # one season of history has no season-on-season error yet: a point interval
            ratio = y[lag:] / np.maximum(y[:-lag], 1e-9) - 1.0 if 0 < lag < n else np.zeros(1)
            qlo, qhi = np.quantile(ratio, [alpha, 1 - alpha])
            sel = k == kk
            lower[sel] = mean[sel] * (1 + qlo)
            upper[sel] = mean[sel] * (1 + qhi)
        return mean, np.maximum(lower, 0.0), upper


# --------------------------------------------------------------------------- ETS models


def _ets(y: np.ndarray, seasonal_periods: int | None):
    """Fit an additive damped-trend ETS (with a seasonal term if periods are given)."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    kwargs = {"seasonal": "add", "seasonal_periods": seasonal_periods} if seasonal_periods else {}
    import pandas as pd

    model = ETSModel(
        pd.Series(y),  # a plain array trips get_prediction in statsmodels 0.15
        error="add",
        trend="add",
        damped_trend=True,
        initialization_method="heuristic" if seasonal_periods else "estimated",
        **kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(disp=False, maxiter=200)


def _ets_interval(fit, horizon: int, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point forecast and analytic prediction interval of a fitted additive ETS model."""
    mean = np.asarray(fit.forecast(horizon), dtype=np.float64)
    n = fit.model.nobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = fit.get_prediction(start=n, end=n + horizon - 1)
        var = np.asarray(pred.var_pred_mean, dtype=np.float64)
    z = norm.ppf(0.5 + level / 2)
    sd = np.sqrt(np.maximum(var, 0.0))
    return mean, mean - z * sd, mean + z * sd


MAX_POINTS_PER_DAY = 48
"""Resolution the statsmodels models fit at: finer series are averaged down to it first
(a weekly ETS season of 10 080 one-minute steps needed 20 GB; 336 half-hours need little)."""


def coarse_factor(step: float) -> int:
    """Smallest divisor f of a day's steps with at most MAX_POINTS_PER_DAY points of f steps."""
    day = period_steps(DAY_S, step)
    return next(f for f in range(1, day + 1) if day % f == 0 and day // f <= MAX_POINTS_PER_DAY)


class _LogModel(_Base):
    """Models fitted on log(1 + y): multiplicative seasonality, positive forecasts.

    Memory and time stay bounded on any series: the history is averaged down to at most
    MAX_POINTS_PER_DAY points a day and capped at `window_weeks`; the coarse forecast is
    held over the fine steps it covers.
    """

    def __init__(self, log: bool = True, window_weeks: int | None = 8) -> None:
        super().__init__()
        self.log = log
        self.window_weeks = window_weeks

    def _to(self, y: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(y, 0.0)) if self.log else y

    def _back(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        if not self.log:
            return arrays
        return tuple(np.expm1(np.minimum(a, 700.0)) for a in arrays)

    def _fit_baseline(self, y: np.ndarray, step: float) -> None:
        f = self.factor_ = coarse_factor(step)
        if self.window_weeks:
            y = y[-self.window_weeks * period_steps(WEEK_S, step) :]
        usable = y.size // f * f  # whole blocks that end at the last observation
        self._fit_coarse(y[y.size - usable :].reshape(-1, f).mean(axis=1), step * f)

    def _predict_baseline(
        self, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = self.factor_
        coarse = self._predict_coarse(-(-horizon // f), level)
        return tuple(np.repeat(a, f)[:horizon] for a in coarse)

    def _fit_coarse(self, y: np.ndarray, step: float) -> None:
        raise NotImplementedError

    def _predict_coarse(
        self, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError


class HoltWinters(_LogModel):
    """Holt-Winters as an ETS(A, Ad, A) state-space model (statsmodels) with analytic intervals.

    The season is weekly when the history holds `min_periods` weeks (it captures weekends),
    else daily; fitted on log(1 + y) unless `log=False`.
    """

    def __init__(
        self,
        period: Literal["auto", "daily", "weekly"] = "auto",
        log: bool = True,
        window_weeks: int | None = 8,
    ):
        super().__init__(log, window_weeks)
        self.period = period
        self.name = "holt-winters"

    def _season(self, step: float) -> int:
        if self.period == "auto":
            return period_steps(DAY_S, step)  # the minimum; weekly chosen in fit if it fits
        return period_steps(_season_seconds(self.period), step)

    def _fit_coarse(self, y: np.ndarray, step: float) -> None:
        m = self._season(step)
        if self.period == "auto" and y.size >= self.min_periods * period_steps(WEEK_S, step):
            m = period_steps(WEEK_S, step)
        self.m_ = m
        self.fit_ = _ets(self._to(y), m)

    def _predict_coarse(
        self, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._back(*_ets_interval(self.fit_, horizon, level))


class Mstl(_LogModel):
    """MSTL (daily and weekly seasons) plus a damped-trend ETS on the deseasonalised series.

    Seasonal components are carried forward from their last season; the interval is the
    ETS interval of the deseasonalised part. Weekly is dropped if under two weeks of data.
    """

    min_periods = 2

    def __init__(self, log: bool = True, window_weeks: int | None = 8) -> None:
        super().__init__(log, window_weeks)
        self.name = "mstl"

    def _season(self, step: float) -> int:
        return period_steps(DAY_S, step)

    def _fit_coarse(self, y: np.ndarray, step: float) -> None:
        from statsmodels.tsa.seasonal import MSTL

        day, week = period_steps(DAY_S, step), period_steps(WEEK_S, step)
        if y.size <= 2 * day:  # statsmodels' MSTL fails on exactly two seasons
            raise ForecastError(
                f"{self.name}: series too short: {y.size * step / DAY_S:g} days, need more "
                "than 2 (two whole daily seasons)"
            )
        periods = (day, week) if y.size > 2 * week else (day,)  # as MSTL itself requires
        z = self._to(y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = MSTL(z, periods=periods).fit()
        seasonal = np.asarray(res.seasonal).reshape(z.size, -1)
        self.seasonal_ = seasonal
        self.periods_ = periods
        self.fit_ = _ets(z - seasonal.sum(axis=1), None)

    def _predict_coarse(
        self, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, _, upper = _ets_interval(self.fit_, horizon, level)
        n = self.seasonal_.shape[0]
        h = np.arange(horizon)
        season = np.zeros(horizon)
        drift_var = 0.0  # carrying a season forward errs by how much seasons differ
        for col, m in enumerate(self.periods_):
            component = self.seasonal_[:, col]
            season += component[n - m :][h % m]
            drift_var += float(np.var(component[m:] - component[:-m]))
        z = norm.ppf(0.5 + level / 2)
        half = np.sqrt(((upper - mean) / z) ** 2 + drift_var) * z
        mean = mean + season
        return self._back(mean, mean - half, mean + half)
