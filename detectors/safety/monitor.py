"""Online monitoring of a deployed detector: how often it alerts and how often it is right.

Feedback arrives from incidents: an operator confirms an incident (its alerts were real) or
rejects it (noise), or confirms/rejects single alerts by id. An incident is anything with
``start``, ``end`` and ``services`` attributes (the correlator's incidents, or
:class:`IncidentRef`); it claims every alert of this detector on one of its services
between start and end. That is what lets a shadow detector, whose alerts nobody sees, be
judged on the same feedback as the live one.

An alert no feedback claims within ``resolve_after`` seconds counts as false: a real
fault always ends up in an incident, so silence means noise. Statistics are taken over a
sliding window of the most recent ``window`` seconds of stream time (never wall time).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from detectors.base import Alert
from twin.errors import FirebreakError

DAY = 86_400.0
PENDING, CONFIRMED, REJECTED = "pending", "confirmed", "rejected"


class MonitorError(FirebreakError):
    """Feedback or a query the monitor cannot honour (unknown alert id, bad window)."""


@runtime_checkable
class IncidentLike(Protocol):
    """What feedback needs from an incident: a time span and the services it covers."""

    start: float
    end: float
    services: Collection[str]


@dataclass(frozen=True)
class IncidentRef:
    """A minimal incident for feedback when no correlator incident is at hand."""

    start: float
    end: float
    services: frozenset[str]
    id: str = ""


@dataclass(frozen=True)
class MonitorStats:
    """Windowed figures for one detector; rates are per service-day, NaN when undefined."""

    start: float
    end: float
    service_days: float
    alerts: int
    confirmed: int
    rejected: int
    expired: int
    pending: int
    incidents: int
    detected_incidents: int

    @property
    def false_alerts(self) -> int:
        return self.rejected + self.expired

    @property
    def resolved(self) -> int:
        return self.confirmed + self.false_alerts

    @property
    def alert_rate(self) -> float:
        return self.alerts / self.service_days if self.service_days > 0 else math.nan

    @property
    def false_rate(self) -> float:
        return self.false_alerts / self.service_days if self.service_days > 0 else math.nan

    @property
    def confirmed_share(self) -> float:
        return self.confirmed / self.resolved if self.resolved else math.nan

    @property
    def recall(self) -> float:
        return self.detected_incidents / self.incidents if self.incidents else math.nan

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("false_alerts", "alert_rate", "false_rate", "confirmed_share", "recall"):
            out[key] = getattr(self, key)
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


@dataclass
class _Tracked:
    id: int
    alert: Alert
    status: str = PENDING


@dataclass
class _Incident:
    start: float
    end: float
    services: frozenset[str]
    confirmed: bool
    detected: bool


class ModelMonitor:
    """Tracks one deployed (or shadow) detector's alerts and the feedback they receive."""

    def __init__(
        self,
        detector: str,
        *,
        n_services: int,
        window: float = DAY,
        resolve_after: float | None = 3600.0,
    ) -> None:
        if n_services < 1:
            raise MonitorError(f"monitor {detector!r}: n_services must be ≥ 1, not {n_services}")
        if not window > 0:
            raise MonitorError(f"monitor {detector!r}: window must be > 0 s, not {window}")
        if resolve_after is not None and resolve_after < 0:
            raise MonitorError(
                f"monitor {detector!r}: resolve_after must be ≥ 0 s or None, not {resolve_after}"
            )
        self.detector = detector
        self.n_services = n_services
        self.window = window
        self.resolve_after = resolve_after
        self._alerts: list[_Tracked] = []
        self._times: list[float] = []
        self._by_id: dict[int, _Tracked] = {}
        self._incidents: list[_Incident] = []
        self._next_id = 1
        self._first: float | None = None
        self._now: float | None = None

    # ---- stream ------------------------------------------------------------------------
    def observe(self, time: float) -> None:
        """Advance stream time (also on quiet steps, so rates see the time that passed)."""
        if self._first is None:
            self._first = time
        if self._now is None or time > self._now:
            self._now = time
        self._prune()

    def record(self, alerts: Iterable[Alert]) -> list[int]:
        """Track alerts the detector emitted; returns their ids for later feedback."""
        ids = []
        for alert in alerts:
            self.observe(alert.time)
            tracked = _Tracked(self._next_id, alert)
            self._next_id += 1
            i = bisect.bisect_right(self._times, alert.time)
            self._times.insert(i, alert.time)
            self._alerts.insert(i, tracked)
            self._by_id[tracked.id] = tracked
            for inc in self._incidents:  # an alert inside an already judged incident
                if self._claims(inc.start, inc.end, inc.services, alert):
                    tracked.status = CONFIRMED if inc.confirmed else REJECTED
                    inc.detected = inc.detected or inc.confirmed
            ids.append(tracked.id)
        return ids

    # ---- feedback ----------------------------------------------------------------------
    def confirm(self, target: int | Alert | IncidentLike | Iterable[Any]) -> int:
        """Mark alerts real: by id, by alert record, or every alert an incident claims."""
        return self._feedback(target, confirmed=True)

    def reject(self, target: int | Alert | IncidentLike | Iterable[Any]) -> int:
        """Mark alerts false, addressed as in :meth:`confirm`."""
        return self._feedback(target, confirmed=False)

    def _feedback(self, target: Any, *, confirmed: bool) -> int:
        status = CONFIRMED if confirmed else REJECTED
        if isinstance(target, IncidentLike):
            services = frozenset(target.services)
            start, end = float(target.start), float(target.end)
            if end < start:
                raise MonitorError(f"monitor {self.detector!r}: incident ends before it starts")
            hits = self._in_span(start, end, services)
            for t in hits:
                t.status = status
            self._incidents.append(
                _Incident(start, end, services, confirmed, confirmed and bool(hits))
            )
            if self._now is None or end > self._now:
                self.observe(end)
            return len(hits)
        if isinstance(target, int | Alert):
            tracked = self._lookup(target)
            tracked.status = status
            return 1
        if isinstance(target, Iterable) and not isinstance(target, str | bytes):
            return sum(self._feedback(t, confirmed=confirmed) for t in target)
        raise MonitorError(
            f"monitor {self.detector!r}: feedback needs an alert id, an Alert, an incident "
            f"(start, end, services) or a list of them, not {type(target).__name__}"
        )

    def _lookup(self, target: int | Alert) -> _Tracked:
        if isinstance(target, Alert):
            i = bisect.bisect_left(self._times, target.time)
            while i < len(self._times) and self._times[i] == target.time:
                if self._alerts[i].alert == target:
                    return self._alerts[i]
                i += 1
            raise MonitorError(
                f"monitor {self.detector!r}: no tracked alert {target.service}/{target.signal} "
                f"at t={target.time} (never recorded, or older than the window)"
            )
        tracked = self._by_id.get(target)
        if tracked is None:
            raise MonitorError(
                f"monitor {self.detector!r}: unknown alert id {target} "
                "(never recorded, or older than the window)"
            )
        return tracked

    @staticmethod
    def _claims(start: float, end: float, services: frozenset[str], alert: Alert) -> bool:
        return start <= alert.time <= end and alert.service in services

    def _in_span(self, start: float, end: float, services: frozenset[str]) -> list[_Tracked]:
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        return [t for t in self._alerts[lo:hi] if t.alert.service in services]

    # ---- statistics --------------------------------------------------------------------
    def stats(self, *, since: float | None = None) -> MonitorStats:
        """Figures over the sliding window ending now (optionally not before ``since``)."""
        if self._now is None or self._first is None:
            return MonitorStats(math.nan, math.nan, 0.0, 0, 0, 0, 0, 0, 0, 0)
        now = self._now
        start = max(self._first, now - self.window)
        if since is not None:
            start = max(start, since)
        counts = {CONFIRMED: 0, REJECTED: 0, "expired": 0, PENDING: 0}
        lo = bisect.bisect_left(self._times, start)
        for t in self._alerts[lo:]:
            if t.status == PENDING and self._expired(t, now):
                counts["expired"] += 1
            else:
                counts[t.status] += 1
        judged = [i for i in self._incidents if i.confirmed and i.end >= start]
        return MonitorStats(
            start=start,
            end=now,
            service_days=self.n_services * (now - start) / DAY,
            alerts=len(self._alerts) - lo,
            confirmed=counts[CONFIRMED],
            rejected=counts[REJECTED],
            expired=counts["expired"],
            pending=counts[PENDING],
            incidents=len(judged),
            detected_incidents=sum(i.detected for i in judged),
        )

    def _expired(self, t: _Tracked, now: float) -> bool:
        return self.resolve_after is not None and now - t.alert.time >= self.resolve_after

    def _prune(self) -> None:
        """Forget what no window can see again, so memory stays bounded on endless streams."""
        if self._now is None:
            return
        horizon = self._now - self.window
        cut = bisect.bisect_left(self._times, horizon)
        if cut > 1024 and cut * 2 > len(self._times):
            for t in self._alerts[:cut]:
                del self._by_id[t.id]
            del self._alerts[:cut]
            del self._times[:cut]
            self._incidents = [i for i in self._incidents if i.end >= horizon]
