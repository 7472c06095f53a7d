"""From an open incident to the `IncidentView` the deciding layer works on.

The RCA ranks services on the telemetry the operator has kept (a wide table, as on real
recorded data), over the declared dependency graph; the signature is read from the alerts
on the top cause. Confidence is how clearly the top cause stands out from the runner-up:
s1 / (s1 + s2) of their RCA scores, so a tie reads 0.5 and a lone suspect 1.0.

Suspects are the incident's services and everything they call, directly or not: a root can
be silent (a dependency whose callers suffer), but a service the incident cannot reach is
not its cause, however anomalous (during a sale every busy service looks anomalous). A
rollout at the top cause within `DEPLOY_WINDOW_S` adds "deploy" to the signature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

from agents.contracts import IncidentView
from agents.deciding.signature import signature_of
from agents.loop.telemetry_view import TelemetryView
from detectors.correlation import Incident
from detectors.rca.base import RcaError, RcaMethod
from twin.telemetry.spans import EPOCH_UNIX_S

TOP_CAUSES = 5
DEPLOY_WINDOW_S = 1800.0  # a rollout this recent at the top cause is a suspect change


def confidence(scores: Sequence[float]) -> float:
    """s1 / (s1 + s2) of the two best scores (1 with a single non-zero score)."""
    top = sorted((max(float(s), 0.0) for s in scores), reverse=True)[:2]
    if not top or top[0] <= 0.0:
        return 0.0
    second = top[1] if len(top) > 1 else 0.0
    return top[0] / (top[0] + second)


class IncidentAnalyst:
    """Runs the RCA for an incident and packs what it found into an `IncidentView`."""

    def __init__(
        self,
        rca: RcaMethod,
        graph: nx.DiGraph,
        entries: Sequence[str],
        history_s: float = 1800.0,
    ) -> None:
        self.rca = rca
        self.graph = graph
        self.entries = tuple(entries)
        self.history_s = history_s
        self._to_table = {s: TelemetryView.table_name(s) for s in graph.nodes}
        self._to_twin = {v: k for k, v in self._to_table.items()}
        self._table_graph = nx.relabel_nodes(graph, self._to_table, copy=True)
        self.callers = {s: tuple(sorted(graph.predecessors(s))) for s in graph.nodes}

    def analyse(self, incident: Incident, view: TelemetryView) -> IncidentView:
        """The incident as the remediation layer sees it, now."""
        causes: list[tuple[str, float]] = []
        evidence: dict[str, Any] = {
            "callers": {k: list(v) for k, v in self.callers.items()},
            "entries": list(self.entries),
        }
        try:
            table = view.table(since=incident.opened - self.history_s)
            ranked = self.rca.rank(table, EPOCH_UNIX_S + incident.opened, self._table_graph)
            suspects = self.suspects(incident.services)
            kept = [c for c in ranked if self._to_twin.get(c.service, c.service) in suspects]
            causes = [(self._to_twin.get(c.service, c.service), float(c.score)) for c in kept]
            if kept:
                evidence["rca"] = {"method": self.rca.name, "top": _plain(kept[0].evidence)}
        except RcaError as exc:  # too little history: decide on alerts alone, say so
            evidence["rca_error"] = str(exc)
        top = causes[0][0] if causes else _loudest(incident)
        conf = confidence([s for _, s in causes]) if causes else 0.0
        signature = signature_of(incident.alerts, top)
        deployed = view.deploys.get(top) if top else None
        if deployed is not None and view.now - deployed <= DEPLOY_WINDOW_S:
            evidence["deploy"] = {"service": top, "time": deployed}
            signature = "deploy" if signature == "unknown" else f"{signature}+deploy"
        return IncidentView(
            id=incident.id,
            opened=incident.opened,
            now=view.now,
            services=tuple(sorted(incident.services)),
            signals=tuple(sorted(incident.signals)),
            detectors=tuple(sorted(incident.detectors)),
            n_alerts=len(incident.alerts),
            top_cause=top,
            cause_confidence=round(conf, 4),
            causes=tuple(causes[:TOP_CAUSES]),
            signature=signature,
            evidence=evidence,
        )

    def suspects(self, services: set[str] | frozenset[str]) -> set[str]:
        """The incident's services and every service they depend on."""
        out = set(services)
        for s in services:
            if s in self.graph:
                out |= nx.descendants(self.graph, s)
        return out


def _loudest(incident: Incident) -> str | None:
    counts: dict[str, int] = {}
    for a in incident.alerts:
        counts[a.service] = counts.get(a.service, 0) + 1
    return max(sorted(counts), key=lambda s: counts[s]) if counts else None


def _plain(value: Any) -> Any:
    """JSON-friendly copy of RCA evidence (numpy scalars to floats)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
