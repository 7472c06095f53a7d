"""Demand surges: one page per surge, however many services it saturates at once.

Why: on a day of real traffic with no fault, a burst of users saturates several services
within the same minute, the correlator opens an incident at each (they need not be call
neighbours), and each one that pages wakes the engineer again for the same cause. An
engineer paged for a surge is already looking at it: a second incident that pages while
users still stand above their usual level (`agents.deciding.analysis.DEMAND_RISE`, the
same test the analysis uses to call a busy cause demand) and within `window_s` of the
surge's first page joins that page instead of sending another. A surge that ends and comes
back after `window_s` pages again.
"""

from __future__ import annotations

from agents.deciding.analysis import DEMAND_RISE
from agents.loop.telemetry_view import TelemetryView


class SurgePages:
    """Which page a new one joins while users' demand surges (see the module docstring)."""

    def __init__(self, view: TelemetryView, window_s: float, rise: float = DEMAND_RISE) -> None:
        self.view = view
        self.window_s = window_s
        self.rise = rise
        self._first: tuple[float, str] | None = None  # (time, incident) of the surge's page

    def joins(self, incident: str, now: float) -> str | None:
        """The incident whose surge page this one joins, or None (then it pages, and if
        demand surges now it becomes the surge's page)."""
        if self.view.entry_rise() < self.rise:
            return None
        first = self._first
        if first is not None and first[1] != incident and now - first[0] <= self.window_s:
            return first[1]
        self._first = (now, incident)
        return None
