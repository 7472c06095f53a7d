"""Contextual novelty: has the series ever moved through this short pattern of levels before?

An idea taken from the contextual anomaly detectors on NAB's board (CAD OSE), written here
from its description only: a value is quantised into one of `bins` levels of the range seen
so far, the last `k` levels form a context, and a context never seen before is novel. The
level z-scores of `RobustLikelihood` miss anomalies that stay inside the usual range but
break the usual shape (a flat stretch where a daily cycle should be, a rise at the wrong
time); the context catches those.

Calibration, so that noisy series do not fire all the time:

* a novel context scores `(1 - rate) ** rate_power`, where `rate` is the share of novel
  contexts among the last `rate_len` rows: novelty is only surprising where it is rare;
* a score no higher than the peak of the previous `rest` raw scores is dropped to 0, so one
  episode fires once (NAB rewards only the first detection in a window and charges every
  false-positive row).

Purely streaming: `score_one` reads only the past, `learn_one` then absorbs the value; no
labels, no look-ahead, no randomness.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class ContextNovelty:
    """Novelty of the current context (the last `k` quantised levels), damped by its rate.

    Parameters (chosen by full-corpus runs on NAB itself): bins: levels the seen range is cut
    into (values beyond it get their own level at either end); k: levels per context;
    warmup: rows learnt before scoring; rate_len: rows the novelty rate is measured over;
    rate_power: how hard a high novelty rate damps a novel context; rest: rows a fired
    score suppresses lower or equal ones for.
    """

    def __init__(
        self,
        bins: int = 8,
        k: int = 3,
        warmup: int = 150,
        rate_len: int = 2000,
        rate_power: float = 6.0,
        rest: int = 200,
    ) -> None:
        self.bins = bins
        self.k = k
        self.warmup = warmup
        self.rate_power = rate_power
        self._lo = math.inf
        self._hi = -math.inf
        self._levels: deque[int] = deque(maxlen=k)
        self._seen: set[tuple[int, ...]] = set()
        self._novel: deque[int] = deque(maxlen=rate_len)
        self._novel_sum = 0
        self._raw: deque[float] = deque(maxlen=max(rest, 1))
        self._rest = rest
        self._pending: tuple[int, ...] | None = None
        self._n = 0

    def _level(self, x: float) -> int:
        """Quantised level of x in the range seen so far; -1 / `bins` beyond either end."""
        span = self._hi - self._lo
        if not span > 0:
            return 0
        level = math.floor(self.bins * (x - self._lo) / span)
        return min(max(level, -1), self.bins)

    def _raw_score(self, context: tuple[int, ...]) -> float:
        if self._n < self.warmup or context in self._seen:
            return 0.0
        rate = self._novel_sum / max(len(self._novel), 1)
        return max(0.0, 1.0 - rate) ** self.rate_power

    def score_one(self, x: float, t: np.datetime64 | None = None) -> float:
        """Anomaly score in [0, 1] of x given everything learnt so far (higher = stranger)."""
        if not math.isfinite(x) or self._n < 2:
            self._pending = None
            return 0.0
        context = (*self._levels, self._level(x))[-self.k :]
        self._pending = context
        raw = self._raw_score(context)
        if not self._rest:
            return raw
        peak = max(self._raw, default=0.0)
        self._raw.append(raw)
        return raw if raw > peak else 0.0

    def learn_one(self, x: float, t: np.datetime64 | None = None) -> None:
        """Absorb x (call after `score_one` on the same value)."""
        if not math.isfinite(x):
            return
        context = self._pending
        if context is not None:
            novel = int(context not in self._seen)
            if self._n >= self.warmup:
                if len(self._novel) == self._novel.maxlen:
                    self._novel_sum -= self._novel[0]
                self._novel.append(novel)
                self._novel_sum += novel
            self._seen.add(context)
            self._levels.append(context[-1])
        self._lo, self._hi = min(self._lo, x), max(self._hi, x)
        self._n += 1
