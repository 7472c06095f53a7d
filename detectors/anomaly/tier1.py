"""Tier 1: cheap streaming detectors, one per signal, vectorised over every signal at once.

- `RobustZ`: distance from the median of a rolling window in MAD units. The median and MAD
  are recomputed every `refresh` frames (amortised), so a frame costs O(signals).
- `Ewma`: distance from an exponentially weighted mean in units of the weighted deviation.
- `Seasonal`: distance from what this signal did at the same time of day (and week), learned
  across days; silent until a bin has history. This is what keeps a daily peak quiet.

Each returns signed z-scores; `floor` sets the smallest spread a signal is judged against,
so a signal that never moves (an error ratio of 0) does not alarm on a rounding change.
"""

from __future__ import annotations

import numpy as np

MAD_TO_SD = 1.4826


class RobustZ:
    """Median/MAD over the last `window` frames, one frame in `stride` kept (the window's
    median barely moves between neighbouring frames, and the sample keeps it cheap)."""

    def __init__(
        self, n: int, *, window: int = 1800, refresh: int = 30, stride: int = 10, floor=0.05
    ) -> None:
        self.n = n
        self.window = window
        self.refresh = refresh
        self.stride = max(1, min(stride, window // 20))
        self.slots = max(window // self.stride, 1)
        self.floor = np.broadcast_to(np.asarray(floor, dtype=float), (n,)).copy()
        self._buf = np.zeros((self.slots, n))
        self._count = 0  # frames learned
        self._kept = 0  # frames stored
        self._since = refresh
        self.median = np.zeros(n)
        self.spread = self.floor.copy()

    def get_params(self) -> dict:
        return {"n": self.n, "window": self.window, "refresh": self.refresh, "stride": self.stride}

    @property
    def ready(self) -> bool:
        return self._count >= min(self.window, 60)

    def score_one(self, x: np.ndarray) -> np.ndarray:
        if self._since >= self.refresh and self._kept:
            hist = self._buf[: min(self._kept, self.slots)]
            self.median = np.median(hist, axis=0)
            mad = np.median(np.abs(hist - self.median), axis=0)
            self.spread = np.maximum(MAD_TO_SD * mad, self.floor)
            self._since = 0
        return (x - self.median) / self.spread

    def learn_one(self, x: np.ndarray) -> None:
        if self._count % self.stride == 0:
            self._buf[self._kept % self.slots] = x
            self._kept += 1
        self._count += 1
        self._since += 1


class Ewma:
    """Exponentially weighted mean and variance; `half_life` in frames."""

    def __init__(self, n: int, *, half_life: float = 600.0, floor=0.05) -> None:
        self.n = n
        self.half_life = half_life
        self.alpha = 1.0 - 0.5 ** (1.0 / half_life)
        self.floor = np.broadcast_to(np.asarray(floor, dtype=float), (n,)).copy()
        self.mean = np.zeros(n)
        self.var = np.zeros(n)
        self._count = 0

    def get_params(self) -> dict:
        return {"n": self.n, "half_life": self.half_life}

    @property
    def ready(self) -> bool:
        return self._count >= 60

    def score_one(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / np.sqrt(self.var + self.floor**2)

    def learn_one(self, x: np.ndarray) -> None:
        if self._count == 0:
            self.mean = x.astype(float).copy()
        a = max(self.alpha, 1.0 / (self._count + 1))
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        self._count += 1


class Seasonal:
    """Per time-of-day bin (and optionally day of week), a mean and spread across periods."""

    def __init__(
        self,
        n: int,
        *,
        period_s: float = 86400.0,
        bin_s: float = 900.0,
        alpha: float = 0.3,
        floor=0.05,
    ) -> None:
        self.n = n
        self.period_s = period_s
        self.bin_s = bin_s
        self.alpha = alpha
        self.n_bins = int(round(period_s / bin_s))
        self.floor = np.broadcast_to(np.asarray(floor, dtype=float), (n,)).copy()
        self.mean = np.zeros((self.n_bins, n))
        self.var = np.zeros((self.n_bins, n))
        self.periods = np.zeros(self.n_bins, dtype=int)  # completed periods per bin
        self._acc = np.zeros(n)
        self._acc_n = 0
        self._bin = -1

    def get_params(self) -> dict:
        return {"n": self.n, "period_s": self.period_s, "bin_s": self.bin_s, "alpha": self.alpha}

    def _index(self, t: float) -> int:
        return int((t % self.period_s) // self.bin_s)

    def ready_at(self, t: float) -> bool:
        return self.periods[self._index(t)] >= 1

    def score_one(self, x: np.ndarray, t: float, noise: np.ndarray | None = None):
        """z against this time of day; `noise` is the frame-to-frame spread (a bin's mean
        varies little between days, a single frame varies by this much around it)."""
        b = self._index(t)
        if self.periods[b] < 1:
            return None
        spread2 = self.var[b] + (self.floor**2 if noise is None else noise**2)
        return (x - self.mean[b]) / np.sqrt(spread2)

    def learn_one(self, x: np.ndarray, t: float) -> None:
        b = self._index(t)
        if b != self._bin:
            self._close_bin()
            self._bin = b
        self._acc += x
        self._acc_n += 1

    def _close_bin(self) -> None:
        if self._bin < 0 or self._acc_n == 0:
            return
        b, avg = self._bin, self._acc / self._acc_n
        if self.periods[b] == 0:
            self.mean[b] = avg
        else:
            d = avg - self.mean[b]
            self.mean[b] += self.alpha * d
            self.var[b] = (1.0 - self.alpha) * (self.var[b] + self.alpha * d * d)
        self.periods[b] += 1
        self._acc[:] = 0.0
        self._acc_n = 0
