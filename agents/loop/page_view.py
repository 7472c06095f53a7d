"""What a page shows a human before any analysis: the alerting services, loudest first."""

from __future__ import annotations

from agents.contracts import IncidentView
from agents.deciding.signature import signature_of
from detectors.correlation import Incident


def basic_view(incident: Incident, now: float) -> IncidentView:
    """The incident as its alerts alone tell it (the traditional stack's page, or the AI's
    before its analysis): the service with the most alerts on top, no confidence."""
    counts: dict[str, int] = {}
    for a in incident.alerts:
        counts[a.service] = counts.get(a.service, 0) + 1
    order = sorted(counts, key=lambda s: (-counts[s], s))
    top = order[0] if order else None
    return IncidentView(
        id=incident.id,
        opened=incident.opened,
        now=now,
        services=tuple(sorted(incident.services)),
        signals=tuple(sorted(incident.signals)),
        detectors=tuple(sorted(incident.detectors)),
        n_alerts=len(incident.alerts),
        top_cause=top,
        cause_confidence=0.0,
        causes=tuple((s, float(counts[s])) for s in order),
        signature=signature_of(incident.alerts, top),
    )
