"""From an open incident to the `IncidentView` the deciding layer works on.

The RCA ranks services on the telemetry the operator has kept (a wide table, as on real
recorded data), over the declared dependency graph; the signature is read from the alerts
on the top cause. Confidence is how clearly the top cause stands out from the runner-up:
s1 / (s1 + s2) of their RCA scores, so a tie reads 0.5 and a lone suspect 1.0.

Suspects are the incident's services and everything they call, directly or not: a root can
be silent (a dependency whose callers suffer), but a service the incident cannot reach is
not its cause, however anomalous (during a sale every busy service looks anomalous). A
rollout at the top cause within `DEPLOY_WINDOW_S` adds "deploy" to the signature.

With infrastructure, the nodes are in the RCA's table (their own metrics) and graph: each
service depends on the nodes its pods run on (from the scheduler's events), so a node can
be ranked the cause. A node cause whose whole zone reports NotReady becomes the zone. Its
signature is "node". Calls into the top cause per caller request rising by
`RETRY_AMPLIFICATION` or more (retries multiplying attempts) add "retries".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

from agents.contracts import IncidentView
from agents.deciding.runbook import canonical_signature
from agents.deciding.signature import signature_of
from agents.loop.telemetry_view import TelemetryView
from detectors.correlation import Incident
from detectors.rca.base import RcaError, RcaMethod
from twin.telemetry.spans import EPOCH_UNIX_S

TOP_CAUSES = 5
DEPLOY_WINDOW_S = 1800.0  # a rollout this recent at the top cause is a suspect change
RETRY_AMPLIFICATION = 1.5  # calls per caller request this many times their normal level
ECHO = 1.3  # load at the cause grew this many times more than the users': an echo
BUSY = 0.8  # CPU or worker pool this busy at the cause ...
DEMAND_RISE = 1.1  # ... while users stand this far above their usual level: demand
MEMORY_NEAR_LIMIT = 0.8  # memory per pod at this share of its limit: OOM kills are near
CHANGE_LEAD_S = 900.0  # a rollout this long before an incident opened is a suspect change
# what a node shows when it takes pods down with it (stopped, OOM-killing, memory or disk
# pressure evicting): missing pods are then the node's doing, not their service's
NODE_TAKES_PODS = frozenset({"down", "oom_kills", "memory_other", "io_wait"})


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
        placements = view.placements()
        graph, table_graph = self._graphs(placements)
        try:
            table = view.table(since=incident.opened - self.history_s)
            ranked = self.rca.rank(table, EPOCH_UNIX_S + incident.opened, table_graph)
            suspects = self.suspects(incident.services, graph)
            kept = [c for c in ranked if self._to_twin.get(c.service, c.service) in suspects]
            # a node is a cause only if it shows something of its own (it is a hub of the
            # graph: every service on it links to it, so a walk can drift there)
            since = incident.opened - 600.0
            kept = [
                c
                for c in kept
                if c.service not in view.node_zone or view.node_symptoms(c.service, since)
            ]
            causes = [(self._to_twin.get(c.service, c.service), float(c.score)) for c in kept]
            if kept:
                evidence["rca"] = {"method": self.rca.name, "top": _plain(kept[0].evidence)}
        except RcaError as exc:  # too little history: decide on alerts alone, say so
            evidence["rca_error"] = str(exc)
        causes = self._direct_evidence_first(causes, incident, view, graph, evidence)
        top = causes[0][0] if causes else _loudest(incident)
        conf = confidence([s for _, s in causes]) if causes else 0.0
        kind = "node" if top in view.node_zone else "service"
        if kind == "node":
            zone = view.node_zone[top]  # type: ignore[index]
            evidence["node"] = {
                "node": top,
                "zone": zone,
                "shows": view.node_symptoms(top, incident.opened - 600.0),  # type: ignore[arg-type]
            }
            if view.zone_down(zone):
                top, kind = zone, "zone"
            signature = "node"
        else:
            signature = signature_of(incident.alerts, top)
            if evidence.get("pods_missing", {}).get("service") == top:
                # pods gone is availability, and the fall in what they serve no demand
                parts = set(signature.split("+")) - {"unknown", "traffic"} | {"availability"}
                signature = canonical_signature("+".join(parts))
            deployed = view.deploys.get(top) if top else None
            if deployed is not None and view.now - deployed <= DEPLOY_WINDOW_S:
                evidence["deploy"] = {"service": top, "time": deployed}
                signature = "deploy" if signature == "unknown" else f"{signature}+deploy"
            if top is not None:
                signature = self._demand(signature, top, incident, view, evidence)
                share = view.memory_share(top)
                if share >= MEMORY_NEAR_LIMIT:  # an OOM kill is coming, whatever users feel
                    evidence["memory_near_limit"] = {"service": top, "share": round(share, 3)}
            if top is not None:
                amp = view.call_amplification(top, incident.opened)
                if amp >= RETRY_AMPLIFICATION:
                    evidence["retries"] = {"service": top, "amplification": round(amp, 3)}
                    signature = "retries" if signature == "unknown" else f"{signature}+retries"
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
            cause_kind=kind,
        )

    @staticmethod
    def _demand(
        signature: str, top: str, incident: Incident, view: TelemetryView, evidence: dict
    ) -> str:
        """Whether the cause's load is user demand ("traffic") or an echo: more calls at the
        cause than its callers' users explain (retries, a backlog) is no demand, so scaling
        is not the remedy; a busy cause while users stand well above their usual level is
        demand, even when the ramp was too gentle for a traffic alert."""
        parts = [p for p in signature.split("+") if p != "unknown"]
        cause = view.arrival_growth(top, incident.opened)
        users = view.entry_growth(incident.opened)
        busy = max(view.latest(top, "cpu_utilization"), view.latest(top, "worker_utilization"))
        if "traffic" in parts and cause > ECHO * users:
            evidence["traffic_echo"] = {"cause_growth": round(cause, 3), "users": round(users, 3)}
            parts.remove("traffic")
        elif "traffic" not in parts and busy >= BUSY and view.entry_rise() >= DEMAND_RISE:
            evidence["demand"] = {"busy": round(busy, 3), "users_rise": round(view.entry_rise(), 3)}
            parts.append("traffic")
        return canonical_signature("+".join(parts)) if parts else "unknown"

    def _direct_evidence_first(
        self,
        causes: list[tuple[str, float]],
        incident: Incident,
        view: TelemetryView,
        graph: nx.DiGraph,
        evidence: dict,
    ) -> list[tuple[str, float]]:
        """What an engineer checks before any ranking, put first (its score the top score
        plus its own; `put_first`):

        1. Pods missing: a suspect service short of pods it had (crash-looping, not coming
           back; `kubectl get pods`): its callers' errors and the load its fallbacks shift
           elsewhere follow from it. Not while a node shows trouble that takes pods with it
           (then the node is the cause, and the RCA ranks nodes).
        2. What changed? A rollout at a suspect service up to CHANGE_LEAD_S before the
           incident opened (or since): most outages follow a change, and a bad setting shows
           at whoever it hurts (a timeout cut at the caller shows as errors and retries at
           the callee). Not when the top cause is a node or changed itself; whether rolling
           it back helps is for the dry run. Rollouts of good versions are events too
           (benign confounders on production telemetry)."""
        suspects = {s for s in self.suspects(incident.services, graph) if s in self.graph} - set(
            view.node_zone
        )
        since = incident.opened - 600.0
        if not any(set(view.node_symptoms(n, since)) & NODE_TAKES_PODS for n in view.node_zone):
            missing = {s: view.pods_missing(s, incident.opened) for s in sorted(suspects)}
            missing = {s: n for s, n in missing.items() if n > 0}
            if missing:
                return put_first(causes, missing, evidence, "pods_missing", "missing")
        if causes and causes[0][0] in view.node_zone:
            return causes
        lead = incident.opened - CHANGE_LEAD_S
        changed = {s: t for s, t in view.deploys.items() if s in suspects and t >= lead}
        if causes and causes[0][0] in changed:
            return causes
        return put_first(causes, changed, evidence, "change", "time")

    def _graphs(self, placements: dict[str, set[str]]) -> tuple[nx.DiGraph, nx.DiGraph]:
        """The dependency graph with service -> node edges where pods run (twin names, and
        the table's names)."""
        if not placements:
            return self.graph, self._table_graph
        graph = self.graph.copy()
        table_graph = self._table_graph.copy()
        for service, nodes in placements.items():
            for node in nodes:
                graph.add_edge(service, node)
                table_graph.add_edge(self._to_table.get(service, service), node)
        return graph, table_graph

    def suspects(
        self, services: set[str] | frozenset[str], graph: nx.DiGraph | None = None
    ) -> set[str]:
        """The incident's services and everything they depend on (nodes included)."""
        graph = self.graph if graph is None else graph
        out = set(services)
        for s in services:
            if s in graph:
                out |= nx.descendants(graph, s)
        return out


def put_first(
    causes: list[tuple[str, float]],
    found: Mapping[str, float],
    evidence: dict,
    what: str,
    measure: str,
) -> list[tuple[str, float]]:
    """The found service the RCA scores highest (then the larger `measure`) first, its score
    the top score plus its own, and `evidence[what]` saying so; `causes` as they were when
    nothing was found."""
    if not found:
        return causes
    score = dict(causes)
    pick = max(sorted(found), key=lambda s: (score.get(s, 0.0), found[s]))
    rank = [c[0] for c in causes].index(pick) + 1 if pick in score else None
    evidence[what] = {"service": pick, measure: found[pick], "rca_rank": rank}
    if causes and causes[0][0] == pick:
        return causes
    top = causes[0][1] if causes else 1.0
    return [(pick, top + score.get(pick, 0.0))] + [c for c in causes if c[0] != pick]


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
