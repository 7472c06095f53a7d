"""What-if dry runs for the operator: health ahead in a blind fork, with an action and without.

Its own module so the operator's incident loop stays one job; the no-action baseline is
cached per decision time because every candidate of one decision shares it.
"""

from __future__ import annotations

from agents.loop.telemetry_view import HealthProbe, TelemetryView
from twin.control.actions import Action
from twin.flow.engine import Simulation


class WhatIf:
    """Dry-runs actions `horizon_s` ahead in forks of the live simulation."""

    def __init__(self, sim: Simulation, view: TelemetryView, horizon_s: float) -> None:
        self.sim = sim
        self.view = view
        self.horizon_s = horizon_s
        self._noop: tuple[float, float] | None = None  # (decision time, health with no action)

    def forget(self) -> None:
        """A new decision: the no-action baseline is measured afresh."""
        self._noop = None

    def __call__(self, action: Action) -> dict[str, float]:
        now = self.view.now
        horizon = min(now + self.horizon_s, self.sim.end)
        if self._noop is None or self._noop[0] != now:
            self._noop = (now, self._health(None, horizon))
        return {
            "health_before": self.view.health(),
            "health_after": self._health(action, horizon),
            "health_noop": self._noop[1],
        }

    def _health(self, action: Action | None, until: float) -> float:
        probe = HealthProbe(self.view, since=until - 60.0)
        # blind: the fork knows the system, not the hidden cause (twin.control.faults)
        child = self.sim.fork(sinks=[probe], blind=True)
        if action is not None:
            child.act(action)
        child.advance(until)
        return probe.health()
