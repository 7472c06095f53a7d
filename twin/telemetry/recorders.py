"""In-memory sinks: compact per-tick signals (for ground truth) and windowed means (plots)."""

from __future__ import annotations

import math

import numpy as np

from twin.fields import M
from twin.telemetry.frame import Chunk

SIGNALS = ("latency_p99_ms", "error_ratio", "arrival_rate", "ready_replicas")
SIGNAL_COLUMNS = [M[name] for name in SIGNALS]


class SignalRecorder:
    """Keeps the four signals ground truth compares, as float32, for every tick."""

    def __init__(self, n_ticks: int, n_services: int) -> None:
        self.data = np.zeros((n_ticks, n_services, len(SIGNALS)), dtype=np.float32)
        self.filled = 0

    def on_chunk(self, chunk: Chunk) -> None:
        rows = len(chunk.times)
        self.data[self.filled : self.filled + rows] = chunk.values[:, :, SIGNAL_COLUMNS]
        self.filled += rows

    def close(self) -> None:
        self.data = self.data[: self.filled]


class WindowedMeans:
    """Means of every metric over fixed windows: enough points for a plot, bounded memory."""

    def __init__(
        self, duration: float, tick: float, n_services: int, n_metrics: int, max_points: int = 1500
    ) -> None:
        ticks = max(1, math.ceil(duration / tick))
        self.per_window = max(1, math.ceil(ticks / max_points))
        n_windows = math.ceil(ticks / self.per_window)
        self.window_s = self.per_window * tick
        self.sums = np.zeros((n_windows, n_services, n_metrics))
        self.counts = np.zeros(n_windows)
        self.tick = tick

    def on_chunk(self, chunk: Chunk) -> None:
        idx = np.round(chunk.times / self.tick).astype(np.int64) // self.per_window
        np.add.at(self.sums, idx, chunk.values)
        np.add.at(self.counts, idx, 1.0)

    def close(self) -> None:
        pass

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        """(window start times, window means) for the windows that saw ticks."""
        have = self.counts > 0
        times = np.arange(len(self.counts))[have] * self.window_s
        return times, self.sums[have] / self.counts[have][:, None, None]
