"""Tumbling windows over a time-ordered stream: the shared clock of the log and trace
detectors, which judge each closed window as a whole."""

from __future__ import annotations

import math

from detectors.base import Alert


class TumblingWindows:
    """Subclasses set `window_s` and `window_start = None`, and implement `_close()`, which
    judges the window starting at `window_start` and moves it on by one window."""

    window_s: float
    window_start: float | None

    def _advance(self, t: float) -> list[Alert]:
        """Close every window that ends at or before `t`; their alerts, in order."""
        if self.window_start is None:
            self.window_start = math.floor(t / self.window_s) * self.window_s
        alerts: list[Alert] = []
        while t >= self.window_start + self.window_s:
            alerts.extend(self._close())
        return alerts

    def _close(self) -> list[Alert]:  # pragma: no cover - abstract
        raise NotImplementedError
