"""Streaming univariate detectors for NAB-style series (one value at a time).

`RobustLikelihood` turns each value into a raw surprise and then into a calibrated score:

1. Raw surprise: the largest robust z-score (median / MAD over a rolling window) of the
   value, of its change from the previous value, and — when the timestamps reveal a daily
   period — of its residual against the same time on previous days. Robust statistics keep
   a single spike from inflating the scale it is judged against.
2. Anomaly likelihood (after Numenta's post-processing, Ahmad et al. 2017): the tail
   probability of the mean of the last few raw scores under a Gaussian fitted to the long
   run of raw scores, reported on a log scale so that 0.5 means a 1-in-100,000 tail. Noisy
   series then need a bigger surprise than calm ones to fire.
3. Refractory damping: a score no higher than the peak of the last `refractory` scores is
   multiplied by `damp`, so one episode fires once instead of once per row (NAB charges
   every false-positive row, but rewards only the first detection in a window).
4. Range novelty: a value beyond everything seen so far by a margin scores at least
   `novelty_score` (also after Numenta's detector, which flags values outside the range).

Purely streaming: `score_one` reads only the past, `learn_one` then absorbs the value; no
labels, no look-ahead, no randomness.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from detectors.nab.context import ContextNovelty

SECONDS_PER_DAY = 86400.0
LOG_TAIL_FLOOR = 1e-10  # the likelihood is reported as log(tail)/log(floor), in [0, 1]


class _Ring:
    """A fixed-size numpy ring buffer of the most recent values."""

    def __init__(self, size: int) -> None:
        self.buf = np.zeros(size)
        self.n = 0
        self.pos = 0

    def push(self, x: float) -> None:
        self.buf[self.pos] = x
        self.pos = (self.pos + 1) % self.buf.size
        self.n += 1

    def view(self) -> np.ndarray:
        return self.buf if self.n >= self.buf.size else self.buf[: self.n]

    def ago(self, k: int) -> float:
        """The value pushed k steps ago (k = 1: the latest)."""
        return float(self.buf[(self.pos - k) % self.buf.size])


def _robust_z(x: float, history: np.ndarray, floor: float) -> float:
    """|x - median| in units of the scaled MAD (never below `floor`)."""
    med = float(np.median(history))
    mad = 1.4826 * float(np.median(np.abs(history - med)))
    return abs(x - med) / max(mad, floor)


class RobustLikelihood:
    """Robust z-scores of value, change and daily residual, then a Numenta-style likelihood.

    Parameters (defaults chosen by a few full-corpus runs on NAB itself; see `firebreak nab`):
    window: rows in the rolling median / MAD; short: raw scores averaged for the likelihood;
    history: raw scores the likelihood's Gaussian is fitted to; warmup: rows before scoring;
    z_scale: z that maps to raw score 1 - 1/e; novelty_margin: share of the seen range a value
    must exceed it by to count as novel.
    """

    def __init__(
        self,
        window: int = 128,
        short: int = 8,
        history: int = 3000,
        warmup: int = 64,
        z_scale: float = 4.0,
        novelty_margin: float = 0.1,
        novelty_score: float = 0.6,
        seasonal_days: int = 3,
        refractory: int = 100,
        damp: float = 0.5,
    ) -> None:
        self.window = window
        self.short = short
        self.history = history
        self.warmup = warmup
        self.z_scale = z_scale
        self.novelty_margin = novelty_margin
        self.novelty_score = novelty_score
        self.seasonal_days = seasonal_days
        self.refractory = refractory
        self.damp = damp
        self._recent: deque[float] = deque(maxlen=max(refractory, 1))
        self._values = _Ring(window)
        self._diffs = _Ring(window)
        self._resid = _Ring(window)
        self._raw_short: deque[float] = deque(maxlen=short)
        self._raw_long: deque[float] = deque(maxlen=history)
        self._raw_sum = 0.0
        self._raw_sq = 0.0
        self._lo = math.inf
        self._hi = -math.inf
        self._last: float | None = None
        self._last_t: np.datetime64 | None = None
        self._steps: deque[float] = deque(maxlen=32)
        self._period: int | None = None
        self._season: _Ring | None = None
        self._n = 0
        self._pending_raw = 0.0

    # -- features -------------------------------------------------------------------

    def _seasonal_residual(self, x: float) -> float | None:
        if self._season is None or self._period is None:
            return None
        p = self._period
        if self._season.n < p * self.seasonal_days:
            return None
        past = [self._season.ago(p * d) for d in range(1, self.seasonal_days + 1)]
        return x - float(np.median(past))

    def _raw(self, x: float) -> float:
        values = self._values.view()
        scale = max(float(np.ptp(values)), abs(float(values[-1])) * 1e-6, 1e-9)
        floor = 1e-3 * scale
        z = _robust_z(x, values, floor)
        if self._last is not None and self._diffs.n >= 8:
            z = max(z, _robust_z(x - self._last, self._diffs.view(), floor))
        r = self._seasonal_residual(x)
        if r is not None and self._resid.n >= 16:
            z = max(z, _robust_z(r, self._resid.view(), floor))
        return 1.0 - math.exp(-z / self.z_scale)

    def _likelihood(self, raw: float) -> float:
        recent = (
            list(self._raw_short)[1:] if len(self._raw_short) == self.short else self._raw_short
        )
        short = (sum(recent) + raw) / (len(recent) + 1)
        n = len(self._raw_long)
        mean = self._raw_sum / n
        var = max(self._raw_sq / n - mean * mean, 0.0)
        std = max(math.sqrt(var), 1e-4)
        tail = 0.5 * math.erfc((short - mean) / (std * math.sqrt(2.0)))
        return math.log(tail + LOG_TAIL_FLOOR) / math.log(LOG_TAIL_FLOOR)

    # -- protocol -------------------------------------------------------------------

    def score_one(self, x: float, t: np.datetime64 | None = None) -> float:
        """Anomaly score in [0, 1] of x given everything learnt so far (higher = stranger)."""
        if self._n < self.warmup or not math.isfinite(x):
            self._pending_raw = 0.0
            return 0.0
        raw = self._raw(x)
        self._pending_raw = raw
        score = self._likelihood(raw) if len(self._raw_long) >= self.warmup else 0.0
        span = self._hi - self._lo
        if x > self._hi + self.novelty_margin * span or x < self._lo - self.novelty_margin * span:
            score = max(score, self.novelty_score)
        score = min(max(score, 0.0), 1.0)
        if self.refractory:
            peak = max(self._recent, default=0.0)
            self._recent.append(score)
            if score <= peak:
                score *= self.damp
        return float(score)

    def learn_one(self, x: float, t: np.datetime64 | None = None) -> None:
        """Absorb x (call after `score_one` on the same value)."""
        if not math.isfinite(x):
            return
        if self._n >= self.warmup:
            self._raw_short.append(self._pending_raw)
            # the Gaussian is fitted to short-run averages, the statistic it judges
            avg = sum(self._raw_short) / len(self._raw_short)
            if len(self._raw_long) == self._raw_long.maxlen:
                old = self._raw_long[0]
                self._raw_sum -= old
                self._raw_sq -= old * old
            self._raw_long.append(avg)
            self._raw_sum += avg
            self._raw_sq += avg * avg
        self._observe_time(t)
        if self._last is not None:
            self._diffs.push(x - self._last)
        r = self._seasonal_residual(x)
        if r is not None:
            self._resid.push(r)
        if self._season is not None:
            self._season.push(x)
        self._values.push(x)
        self._lo, self._hi = min(self._lo, x), max(self._hi, x)
        self._last = x
        self._n += 1

    def _observe_time(self, t: np.datetime64 | None) -> None:
        """Infer a daily period (rows per day) from the first steps' spacing."""
        if t is None:
            return
        if self._last_t is not None and self._period is None and self._season is None:
            step = float((t - self._last_t) / np.timedelta64(1, "s"))
            if step > 0:
                self._steps.append(step)
            if len(self._steps) == self._steps.maxlen:
                rows = SECONDS_PER_DAY / float(np.median(self._steps))
                if 12 <= rows <= 2000 and abs(rows - round(rows)) < 1e-6:
                    self._period = int(round(rows))
                    self._season = _Ring(self._period * self.seasonal_days + 1)
                else:
                    self._season = _Ring(1)  # no daily period: stop looking
        self._last_t = t


class RobustContext:
    """`RobustLikelihood` and `ContextNovelty` combined by the max of their scores.

    The likelihood catches values and jumps out of the usual range; the context catches
    values inside the range that break the usual shape. The context's score is scaled by
    `context_weight` so that only a novel context in a series where novelty is rare
    outranks a strong likelihood (weight chosen by full-corpus runs on NAB itself).
    """

    def __init__(self, context_weight: float = 0.6) -> None:
        self.context_weight = context_weight
        self._likelihood = RobustLikelihood()
        self._context = ContextNovelty()

    def score_one(self, x: float, t: np.datetime64 | None = None) -> float:
        """Anomaly score in [0, 1] of x given everything learnt so far (higher = stranger)."""
        level = self._likelihood.score_one(x, t)
        shape = self._context.score_one(x, t)
        return max(level, self.context_weight * shape)

    def learn_one(self, x: float, t: np.datetime64 | None = None) -> None:
        """Absorb x (call after `score_one` on the same value)."""
        self._likelihood.learn_one(x, t)
        self._context.learn_one(x, t)


DETECTORS = {"robust_likelihood": RobustLikelihood, "robust_context": RobustContext}
