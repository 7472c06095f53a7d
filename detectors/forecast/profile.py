"""An online seasonal-profile forecaster: useful after a day, better with more, bounded cost.

The forecast, in log space z = log(y + c) (c a small share of the series' early mean, so
zeros are allowed and errors are relative):

    ẑ(t + h) = profile(t + h) + shift + (deviation − shift) · exp(−h·step / level_decay_s)

- **profile**: the geometric mean of the same time of day (`season_s`: a day, unless a
  test shortens it; a "week" is seven seasons) over the last `profile_days` days
  (daily), of the same time of week over the last `profile_weeks` weeks (weekly), or their
  average (blend), each smoothed over ±`smooth_s`. Which one is used is re-chosen every
  midnight by how each would have forecast the last week's days (past data only). With one
  day of history it is yesterday (the daily naive); with more it averages the noise out;
  after a week the weekly shape can win where weekends differ.
- **deviation**: an exponentially weighted mean (half-life `level_halflife_s`) of how far
  the recent actuals sit from their profile. It carries a level shift (a cold week, a
  Monday after a Sunday, growth) into the next hours and fades with the horizon
  (`level_decay_s`), optionally towards a slow one (half-life `shift_halflife_s`) that
  does not fade (off by default: on the development series it cost 0.5% of accuracy; real
  deviations mostly pass, and the profile itself takes a lasting shift in within days).
- **declared events** (launches, campaigns) are masked: the history keeps what the profile
  expected instead, and each past occurrence's lift (actual / expected) scales the forecast
  of a future one (models.Calendar).
- **intervals**: calibration.HorizonCalibrator, i.e. quantiles of this forecaster's own
  recent errors per horizon with adaptive conformal levels, kept apart by the forecast's
  level (`level_bins` quantile bands of the history: a Mondrian split).

State is a ring of `history_days` days plus the calibrator's rings, so memory and time per
observation do not grow with the series: a month of 1-minute data is one pass
(`benchmarks.bench_forecast --scale` measures it). `learn_one` streams; `fit` streams a
whole series; `predict` may be called at any point.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from detectors.forecast.base import Event, Forecast
from detectors.forecast.calibration import GAMMAS, MIN_ERRORS, HorizonCalibrator, horizon_grid
from detectors.forecast.models import DAY_S, Calendar, ForecastError, check_series, period_steps

MODES = ("daily", "weekly", "blend")
MIN_WINDOW = 64
"""Fewest errors kept per horizon, however coarse the series (quantiles need a sample)."""
SMOOTH_POINTS = 7
"""Most phases averaged to smooth the profile (spread evenly over ±smooth_s)."""
WARMUP_STEPS = 12
"""Observations (with a positive mean) that fix the log offset c before anything is issued."""


def _nanmean(a: np.ndarray, axis) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


class SeasonalProfile:
    """Seasonal profile × level deviation with self-calibrated intervals (module docstring)."""

    def __init__(
        self,
        *,
        profile_days: int = 7,
        profile_weeks: int = 4,
        history_days: int = 28,
        smooth_s: float = 900.0,
        level_halflife_s: float = 3600.0,
        level_decay_s: float = 6 * 3600.0,
        shift_halflife_s: float | None = None,
        calib_days: float = 7.0,
        gamma: float | tuple[float, ...] = GAMMAS,
        origins_per_day: int = 96,
        max_horizon_s: float | None = None,
        offset: float = 0.1,
        level: float = 0.9,
        level_bins: int = 3,
        season_s: float = DAY_S,
    ) -> None:
        if not 1 <= profile_days < history_days:
            raise ForecastError(
                f"profile_days must be in [1, history_days), got {profile_days} "
                f"(history_days {history_days})"
            )
        if profile_weeks < 0 or 7 * profile_weeks > history_days:
            raise ForecastError(
                f"profile_weeks must be in [0, history_days / 7], got {profile_weeks}"
            )
        if not 0 < level < 1:
            raise ForecastError(f"level must be in (0, 1), got {level}")
        if offset <= 0:
            raise ForecastError(f"offset must be > 0, got {offset}")
        self.profile_days = profile_days
        self.profile_weeks = profile_weeks
        self.history_days = history_days
        self.smooth_s = smooth_s
        self.level_halflife_s = level_halflife_s
        self.level_decay_s = level_decay_s
        self.shift_halflife_s = shift_halflife_s
        self.calib_days = calib_days
        self.gamma = gamma
        self.origins_per_day = origins_per_day
        self.max_horizon_s = max_horizon_s
        self.season_s = season_s
        self.offset = offset
        self.level = level
        self.level_bins = level_bins
        self.name = "seasonal-profile"
        self.step_: float | None = None
        self.events_: list[Event] = []

    # -- set-up --------------------------------------------------------------------------
    def declare(self, events: Sequence[Event]) -> SeasonalProfile:
        """Declared events (past and future) the stream will run through."""
        self.events_ = sorted(events, key=lambda e: e.start)
        self._event_sums = {i: [0.0, 0.0] for i in range(len(self.events_))}
        self._event_done: set[int] = set()
        return self

    def _start(self, t0: float, step: float) -> None:
        self.step_ = step
        self.m_ = period_steps(self.season_s, step)
        m, days = self.m_, self.history_days
        self.ring_ = np.full((days, m), np.nan)
        self.t0_ = t0
        self.p0_ = int(round((t0 % self.season_s) / step)) % m
        self.n_ = 0  # observations so far
        self.day_first_ = self.p0_ // m
        self.kappa_ = 1.0 - 0.5 ** (step / self.level_halflife_s)
        slow = self.shift_halflife_s
        self.kappa_slow_ = 0.0 if not slow else 1.0 - 0.5 ** (step / slow)
        k = int(round(self.smooth_s / step))
        # at most SMOOTH_POINTS samples across ±smooth_s: fine series stay cheap
        self.offsets_ = np.unique(np.round(np.linspace(-k, k, min(2 * k + 1, SMOOTH_POINTS))))
        self.offsets_ = self.offsets_.astype(np.int64)
        self.c_: float | None = None
        self._warm: list[float] = []
        self.flat_ = 0.0
        self.dev_ = 0.0
        self.shift_ = 0.0  # the slow part of the deviation: a lasting level shift
        self.mode_ = "daily"
        self._today: np.ndarray | None = None  # profile (log space) of the current day
        max_h = max(1, int(round((self.max_horizon_s or self.season_s) / step)))
        self.stride_ = max(1, m // self.origins_per_day)
        window = max(MIN_WINDOW, int(round(self.calib_days * m / self.stride_)))
        grid = horizon_grid(max_h)
        # errors of the flat forecast that runs before the first midnight are kept apart:
        # they stand in only where the profile's own errors are still too few
        self.calibrator_ = HorizonCalibrator(
            grid, window, self.level, self.gamma, categories=self.level_bins
        )
        self.warm_calibrator_ = HorizonCalibrator(grid, window, self.level, self.gamma)
        self.cuts_: np.ndarray | None = None  # level-category boundaries (log space)
        self.calendar = Calendar()
        if not hasattr(self, "_event_sums"):
            self.declare(self.events_)

    # -- streaming -----------------------------------------------------------------------
    def fit(
        self, times: np.ndarray, values: np.ndarray, events: Sequence[Event] = ()
    ) -> SeasonalProfile:
        """Stream a whole regular series (a fresh state; events are declared first)."""
        t, y, step = check_series(times, values)
        if (y < 0).any():
            raise ForecastError(f"{self.name}: rates must be non-negative")
        self.declare(events)
        self._start(float(t[0]), step)
        for ti, yi in zip(t.tolist(), y.tolist(), strict=True):
            self._learn(ti, yi, True)
        return self

    def learn_one(self, time: float, value: float, observed: bool = True) -> SeasonalProfile:
        """Take the next observation (times on a regular grid, the step fixed by the first two).

        `observed=False` marks a gap filled by the caller: the model keeps its own
        expectation there and learns nothing from it (no level update, no error scored).
        """
        if not math.isfinite(value) or value < 0:
            raise ForecastError(f"{self.name}: value at t={time:g} must be finite and >= 0")
        if self.step_ is None:
            first = getattr(self, "_first", None)
            if first is None:
                self._first = (float(time), float(value))
                return self
            t0, y0 = first
            if time <= t0:
                raise ForecastError(f"{self.name}: times must increase ({time:g} after {t0:g})")
            self._start(t0, float(time) - t0)
            self._learn(t0, y0, True)
            self._first = None
        expected = self.t0_ + self.n_ * self.step_
        if abs(time - expected) > 1e-6 * self.step_:
            raise ForecastError(
                f"{self.name}: expected the observation at t={expected:g}, got t={time:g} "
                f"(a regular grid of {self.step_:g} s)"
            )
        self._learn(float(time), float(value), observed)
        return self

    def _learn(self, t: float, y: float, observed: bool) -> None:
        m, i = self.m_, self.n_
        pos = self.p0_ + i
        day, phase = divmod(pos, m)
        inside = self._inside_events(t)
        masked = bool(inside) or not observed
        if self.c_ is None:
            self._warm.append(y)
            mean = float(np.mean(self._warm))
            if len(self._warm) >= WARMUP_STEPS and mean > 0:
                self.c_ = self.offset * mean
                self.flat_ = float(np.mean(np.log(np.asarray(self._warm) + self.c_)))
        clean = y
        if masked and self.c_ is not None:
            clean = max(float(np.exp(self._point_now(pos)) - self.c_), 0.0)
        if inside and observed:
            for k in inside:
                self._event_sums[k][0] += y
                self._event_sums[k][1] += clean
        self._finish_events(t)
        self.ring_[day % self.history_days, phase] = clean
        self.n_ += 1
        self.pos_ = pos
        self.day_n_, self.phase_n_ = day, phase
        if self.c_ is None:
            return
        z = math.log(clean + self.c_)
        if not masked:
            self.flat_ += self.kappa_ * (z - self.flat_)
            base = self._today[phase] if self._today is not None else np.nan
            if np.isfinite(base):
                self.dev_ += self.kappa_ * (z - base - self.dev_)
                self.shift_ += self.kappa_slow_ * (z - base - self.shift_)
        z_actual = math.log(y + self.c_)
        self.calibrator_.observe(i, z_actual, score=not masked)
        self.warm_calibrator_.observe(i, z_actual, score=not masked)
        if phase == m - 1:
            self._new_day()
        if (i + 1) % self.stride_ == 0:
            grid = self.calibrator_.grid
            point = self._point(pos + grid, grid)
            if self._today is not None:
                self.calibrator_.issue(i + 1, point, self._category(point))
            else:
                self.warm_calibrator_.issue(i + 1, point)

    # -- events --------------------------------------------------------------------------
    def _inside_events(self, t: float) -> list[int]:
        return [k for k, e in enumerate(self.events_) if e.start <= t < e.end]

    def _finish_events(self, t: float) -> None:
        for k, e in enumerate(self.events_):
            if k in self._event_done or t < e.end:
                continue
            self._event_done.add(k)
            actual, expected = self._event_sums[k]
            if expected > 0 and actual > 0:
                self.calendar.add(e, actual / expected)

    # -- the profile ---------------------------------------------------------------------
    def _gather(self, days, phase, upto) -> np.ndarray:
        """Kept values (log space) of `days` at `phase`, NaN after `upto` or no longer kept."""
        keep = self.history_days
        latest = np.where(phase <= self.phase_n_, self.day_n_, self.day_n_ - 1)
        ok = (days <= upto) & (days > latest - keep) & (days >= self.day_first_)
        vals = self.ring_[np.where(ok, days, 0) % keep, np.broadcast_to(phase, days.shape)]
        return np.log(np.where(ok, vals, np.nan) + self.c_)

    def _profile(self, pos: np.ndarray, mode: str) -> np.ndarray:
        """The seasonal profile (log space) at absolute positions; NaN where unknown."""
        offsets = self.offsets_
        day, phase = np.divmod(pos[:, None] + offsets[None, :], self.m_)
        latest = np.where(phase <= self.phase_n_, self.day_n_, self.day_n_ - 1)
        last = np.minimum(day - 1, latest)
        days = last[..., None] - np.arange(self.profile_days)
        z = self._gather(days, phase[..., None], last[..., None])
        daily = _nanmean(z.reshape(len(pos), -1), axis=1)
        if mode == "daily" or not self.profile_weeks:
            return daily
        days = day[..., None] - 7 * np.arange(1, self.profile_weeks + 1)
        z = self._gather(days, phase[..., None], last[..., None])
        weekly = _nanmean(z.reshape(len(pos), -1), axis=1)
        blend = 0.5 * (daily + weekly) if mode == "blend" else weekly
        return np.where(np.isfinite(weekly), blend, daily)

    def _new_day(self) -> None:
        """Midnight: pick the profile that would have forecast the last week best, cache it."""
        m = self.m_
        done = self.day_n_ - self.day_first_ + 1  # days seen, the first maybe partial
        scores = {}
        if done >= 8 and self.profile_weeks:
            first = self.day_n_ - min(7, done - 8)  # days that have a week before them
            pos = np.arange(first * m, (self.day_n_ + 1) * m)
            day, phase = np.divmod(pos, m)
            actual = self._gather(day, phase, self.day_n_)
            for mode in MODES:
                err = np.abs(actual - self._profile(pos, mode))
                scores[mode] = float(np.nanmean(err)) if np.isfinite(err).any() else np.inf
            self.mode_ = min(MODES, key=lambda k: (scores[k], MODES.index(k)))
        nxt = np.arange((self.day_n_ + 1) * m, (self.day_n_ + 2) * m)
        self._today = self._profile(nxt, self.mode_)
        self._today_day = self.day_n_ + 1
        kept = self.ring_[np.isfinite(self.ring_)]
        if kept.size and self.level_bins > 1:
            z = np.log(kept + self.c_)
            self.cuts_ = np.quantile(z, np.arange(1, self.level_bins) / self.level_bins)

    def _category(self, z: np.ndarray) -> np.ndarray:
        """Level category of forecasts (log space): which quantile band of the history."""
        if self.cuts_ is None:
            return np.zeros(np.shape(z), dtype=np.int64)
        return np.searchsorted(self.cuts_, z)

    # -- forecasting ---------------------------------------------------------------------
    def _point(self, pos: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Point forecast (log space) at absolute positions `pos`, `h` steps ahead."""
        base = self._profile(np.asarray(pos), self.mode_)
        decay = np.exp(-np.asarray(h, dtype=np.float64) * self.step_ / self.level_decay_s)
        deviation = self.shift_ + (self.dev_ - self.shift_) * decay
        z = np.where(np.isfinite(base), base + deviation, self.flat_)
        return np.maximum(z, math.log(self.c_))  # never below a zero rate

    def _point_now(self, pos: int) -> float:
        """What the model expected at `pos` before seeing it (for masking events)."""
        if self._today is not None and pos // self.m_ == self._today_day:
            base = self._today[pos % self.m_]
            if np.isfinite(base):
                return float(base + self.dev_)
        return float(self.flat_)

    def is_ready(self) -> bool:
        """Whether `predict` can answer: a level seen and some forecast errors measured (a
        stream whose first hours are gaps or flat zeros may not be, even after a day)."""
        if self.step_ is None or self.c_ is None:
            return False
        counts = (self.calibrator_.pooled_count(), self.warm_calibrator_.pooled_count())
        return any(bool((c >= MIN_ERRORS).any()) for c in counts)

    def is_calibrated(self, horizon: int) -> bool:
        """Whether the intervals up to `horizon` steps come from the profile's own errors,
        not from the cruder first-day stand-in (a caller may then trust them to act)."""
        cal = getattr(self, "calibrator_", None)
        if cal is None:
            return False
        upto = cal.grid <= max(horizon, int(cal.grid[0]))
        return bool((cal.pooled_count()[upto] >= MIN_ERRORS).all())

    def predict(self, horizon: int, level: float = 0.9, events: Sequence[Event] = ()) -> Forecast:
        """`horizon` steps after the last observation, with a central `level` interval."""
        return self.predict_levels(horizon, (level,), events)[0]

    def predict_levels(
        self, horizon: int, levels: Sequence[float], events: Sequence[Event] = ()
    ) -> list[Forecast]:
        """One forecast per interval level, sharing the point forecast (cheaper than each)."""
        if self.step_ is None or self.c_ is None:
            raise ForecastError(f"{self.name}: predict called before enough history was seen")
        if horizon < 1:
            raise ForecastError(f"horizon must be >= 1, got {horizon}")
        for level in levels:
            if not 0 < level < 1:
                raise ForecastError(f"level must be in (0, 1), got {level}")
        h = np.arange(1, horizon + 1)
        z = self._point(self.pos_ + h, h)
        c = self.c_
        mean = np.maximum(np.exp(z) - c, 0.0)
        times = self.t0_ + self.step_ * (self.n_ - 1 + h)
        bands = self.calibrator_.bands(
            horizon, levels, fallback=self.warm_calibrator_, cats=self._category(z)
        )
        if bands is None:
            raise ForecastError(
                f"{self.name}: no forecast errors measured yet (needs about "
                f"{MIN_ERRORS * self.stride_ + 1} observations)"
            )
        out = []
        for level, (low, high) in zip(levels, bands, strict=True):
            lower = np.minimum(np.maximum(np.exp(z + low) - c, 0.0), mean)
            upper = np.maximum(np.exp(z + high) - c, mean)
            out.append(self.calendar.apply(Forecast(times, mean, lower, upper, level), events))
        return out
