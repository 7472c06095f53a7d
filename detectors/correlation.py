"""Streaming alert correlation: alert storms become incidents by time and topology.

An on-call engineer should get one incident per failure, not one page per alert. Alerts
arrive in time order; each joins, opens or merges incidents:

- An alert *links* to an open incident when its service is already in that incident, or
  when a service within ``hops`` hops of it in the undirected call graph alerted in that
  incident during the last ``window_s`` seconds. Its own service stays linked for as long as
  the incident is open (a flapping alert on the same service is the same problem); a
  neighbour must be fresh (a cascade crosses a call edge quickly, an old neighbour is likely
  something else).
- No link: the alert opens a new incident. One link: it joins. Several: the alert bridges
  them, and they merge into the oldest, which keeps its id and lists the others in
  ``merged``.
- An incident closes once no alert has joined it for ``quiet_s`` seconds; its ``closed``
  time is its last alert plus ``quiet_s``, so it does not depend on when you ask.

Defaults and why:

- ``window_s = 120``: in the twin a cascade reaches a neighbour within seconds (labels show
  neighbouring onsets a tick apart), but detectors with rolling baselines and persistence
  confirm different signals up to a minute or two apart; two minutes joins one cascade's
  alerts while keeping faults minutes apart separate.
- ``quiet_s = 300``: Alertmanager's default group interval; persistent faults re-fire
  within it, and recovery transients (restarts, scale-down) settle within it.
- ``hops = 1``: cascades spread one call edge at a time. Two hops would join every pair of
  leaves through a hub (Online Boutique's frontend calls nearly everything), so unrelated
  faults on two backends would merge.

The graph is the *declared* call topology (a networkx graph, or anything with a
``graph()`` method such as the twin's ``Topology``); fault labels are never read here.
Services missing from the graph are treated as isolated: they group only with themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from detectors.base import Alert
from twin.errors import FirebreakError

DEFAULT_WINDOW_S = 120.0
DEFAULT_QUIET_S = 300.0
DEFAULT_HOPS = 1


class CorrelationError(FirebreakError):
    """Bad correlator settings or an alert stream out of time order."""


@dataclass(eq=False)
class Incident:
    """A group of alerts believed to share one cause; ``closed`` is None while open."""

    id: str
    opened: float
    updated: float
    closed: float | None = None
    alerts: list[Alert] = field(default_factory=list)
    services: set[str] = field(default_factory=set)
    signals: set[str] = field(default_factory=set)
    detectors: set[str] = field(default_factory=set)
    merged: list[str] = field(default_factory=list)
    last_seen: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def is_open(self) -> bool:
        return self.closed is None

    def _take(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self.updated = max(self.updated, alert.time)
        self.services.add(alert.service)
        self.signals.add(alert.signal)
        self.detectors.add(alert.detector)
        self.last_seen[alert.service] = max(
            self.last_seen.get(alert.service, alert.time), alert.time
        )

    def _absorb(self, other: Incident) -> None:
        self.alerts = sorted(self.alerts + other.alerts, key=lambda a: a.time)
        self.opened = min(self.opened, other.opened)
        self.updated = max(self.updated, other.updated)
        self.services |= other.services
        self.signals |= other.signals
        self.detectors |= other.detectors
        self.merged.extend([other.id, *other.merged])
        for service, t in other.last_seen.items():
            self.last_seen[service] = max(self.last_seen.get(service, t), t)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "opened": self.opened,
            "updated": self.updated,
            "closed": self.closed,
            "n_alerts": len(self.alerts),
            "services": sorted(self.services),
            "signals": sorted(self.signals),
            "detectors": sorted(self.detectors),
            "merged": list(self.merged),
            "alerts": [a.to_dict() for a in self.alerts],
        }


def _undirected(graph: Any) -> nx.Graph:
    """Accept a networkx graph or an object with ``graph()`` (the twin's Topology)."""
    if graph is None:
        return nx.Graph()
    if not isinstance(graph, nx.Graph) and callable(getattr(graph, "graph", None)):
        graph = graph.graph()
    if not isinstance(graph, nx.Graph):
        raise CorrelationError(
            f"graph: expected a networkx graph or a topology with graph(), "
            f"got {type(graph).__name__}"
        )
    return graph.to_undirected(as_view=True) if graph.is_directed() else graph


class Correlator:
    """Groups a time-ordered alert stream into incidents (see the module docstring)."""

    def __init__(
        self,
        graph: Any = None,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        quiet_s: float = DEFAULT_QUIET_S,
        hops: int = DEFAULT_HOPS,
    ) -> None:
        if not window_s > 0:
            raise CorrelationError(f"window_s: expected a positive number, got {window_s!r}")
        if not quiet_s > 0:
            raise CorrelationError(f"quiet_s: expected a positive number, got {quiet_s!r}")
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
            raise CorrelationError(f"hops: expected a whole number >= 0, got {hops!r}")
        self.graph = _undirected(graph)
        self.window_s = float(window_s)
        self.quiet_s = float(quiet_s)
        self.hops = hops
        self._all: list[Incident] = []  # every incident not merged away, in opening order
        self._open: list[Incident] = []
        self._owner: dict[str, Incident] = {}  # service -> the open incident holding it
        self._near: dict[str, frozenset[str]] = {}
        self._seq = 0
        self._now = float("-inf")

    @property
    def incidents(self) -> list[Incident]:
        """All incidents so far (open and closed), in the order they opened."""
        return list(self._all)

    @property
    def open_incidents(self) -> list[Incident]:
        return list(self._open)

    def neighbourhood(self, service: str) -> frozenset[str]:
        """The service and every service within ``hops`` hops of it, cached."""
        near = self._near.get(service)
        if near is None:
            if service in self.graph:
                lengths = nx.single_source_shortest_path_length(self.graph, service, self.hops)
                near = frozenset(lengths)
            else:
                near = frozenset((service,))
            self._near[service] = near
        return near

    def add(self, alert: Alert) -> Incident:
        """Route one alert into an incident and return that incident."""
        if alert.time < self._now:
            raise CorrelationError(
                f"alert at t={alert.time:g} on {alert.service!r} arrived after t={self._now:g}: "
                "alerts must come in time order"
            )
        self._now = alert.time
        self.close_idle(alert.time)
        linked = self._linked(alert)
        if not linked:
            incident = Incident(id=self._next_id(), opened=alert.time, updated=alert.time)
            self._all.append(incident)
            self._open.append(incident)
        else:
            incident = linked[0]
            for other in linked[1:]:
                self._merge(incident, other)
        incident._take(alert)
        self._owner[alert.service] = incident
        return incident

    def extend(self, alerts: Iterable[Alert]) -> list[Incident]:
        """Add many alerts (in time order); returns the incidents touched, without repeats."""
        touched: dict[str, Incident] = {}
        for alert in alerts:
            incident = self.add(alert)
            touched[incident.id] = incident
        return [i for i in self._all if i.id in touched]

    def close_idle(self, now: float) -> list[Incident]:
        """Close every open incident quiet for at least ``quiet_s`` by ``now``; return them."""
        done = [i for i in self._open if now - i.updated >= self.quiet_s]
        for incident in done:
            self._close(incident)
        return done

    def flush(self) -> list[Incident]:
        """End of stream: close every open incident as if the stream had gone quiet."""
        done = list(self._open)
        for incident in done:
            self._close(incident)
        return done

    def _linked(self, alert: Alert) -> list[Incident]:
        fresh_after = alert.time - self.window_s
        found: dict[str, Incident] = {}
        for service in self.neighbourhood(alert.service):
            incident = self._owner.get(service)
            if incident is None or incident.id in found:
                continue
            if service == alert.service or incident.last_seen[service] >= fresh_after:
                found[incident.id] = incident
        return sorted(found.values(), key=lambda i: (i.opened, i.id))

    def _merge(self, keep: Incident, other: Incident) -> None:
        keep._absorb(other)
        self._open.remove(other)
        self._all.remove(other)
        for service in other.services:
            self._owner[service] = keep

    def _close(self, incident: Incident) -> None:
        incident.closed = incident.updated + self.quiet_s
        self._open.remove(incident)
        for service in incident.services:
            if self._owner.get(service) is incident:
                del self._owner[service]

    def _next_id(self) -> str:
        self._seq += 1
        return f"inc-{self._seq:05d}"


def correlate(
    alerts: Iterable[Alert],
    graph: Any = None,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    quiet_s: float = DEFAULT_QUIET_S,
    hops: int = DEFAULT_HOPS,
) -> list[Incident]:
    """Batch helper: correlate a finished alert list (sorted by time, stably) and close all."""
    correlator = Correlator(graph, window_s=window_s, quiet_s=quiet_s, hops=hops)
    for alert in sorted(alerts, key=lambda a: a.time):
        correlator.add(alert)
    correlator.flush()
    return correlator.incidents
