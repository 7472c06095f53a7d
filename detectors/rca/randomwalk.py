"""Anomaly-weighted personalised PageRank over the dependency graph (MicroRCA-style).

A fault spreads against the calls: a slow dependency makes its callers slow. So a walker
that starts at anomalous services and steps from a caller to the callees that are anomalous
*and* moved together with it (correlated signals) ends up, more often than anywhere else,
at the deepest anomalous service on the path: the cause. The walk (after MicroRCA,
Wu et al. NOMS'20, and the self/backward edges of CloudRanger, Wang et al. CCGRID'18):

- personalisation: each service's robust anomaly score (`RobustScoreRca`) above
  `threshold` (normal noise must not spread the walk over a large fleet), log-compressed
  so one enormous signal does not pin the walk to its service;
- forward edge caller → callee: eps + corr(caller, callee) × anomaly(callee), the anomaly
  being that excess saturated to [0, 1) so "clearly anomalous" counts the same whatever
  its magnitude;
- backward edge callee → caller: `backward` × the forward weight, so mass can leave a
  healthy dead end;
- self-loop: anomaly(service) − max anomaly(callees), clipped at 0, so a service that is
  anomalous while everything it calls is healthy keeps its mass.

Correlation is the largest |Pearson| between one service's `corr_signals` most anomalous
signals and the other's, over the normal window's last stretch and the incident window
together (a step shows up as correlation; two flat lines do not). Only the most anomalous
signals take part: workload noise is shared by every service and would correlate them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import networkx as nx
import numpy as np
import pandas as pd

from detectors.rca.base import Cause
from detectors.rca.robust import RobustScoreRca, Windows
from twin.telemetry.widecsv import rcaeval_service_name


def _standardised(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit norm; flat or NaN columns become zeros."""
    x = np.nan_to_num(x - np.nanmean(x, axis=0, keepdims=True))
    norm = np.linalg.norm(x, axis=0, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)


def _align(graph: nx.DiGraph, services: list[str]) -> nx.DiGraph:
    """The graph with its nodes renamed to the table's service names where they differ only
    by RCAEval's `_` → `-`, plus any table service the graph lacks (as an isolated node)."""
    known = set(services)
    mapping = {
        n: rcaeval_service_name(str(n))
        for n in graph.nodes
        if n not in known and rcaeval_service_name(str(n)) in known
    }
    g = nx.relabel_nodes(graph, mapping, copy=True) if mapping else graph.copy()
    g.add_nodes_from(services)
    return g


class RandomWalkRca:
    """MicroRCA-style ranking: PageRank mass of an anomaly-weighted walk toward causes."""

    name = "randomwalk"

    def __init__(
        self,
        before_s: float = 1800.0,
        after_s: float = 300.0,
        *,
        alpha: float = 0.85,
        backward: float = 0.2,
        eps: float = 0.01,
        threshold: float = 3.0,
        saturation: float = 10.0,
        corr_context_s: float | None = None,
        corr_signals: int = 2,
        scorer: RobustScoreRca | None = None,
    ) -> None:
        self.before_s = before_s
        self.after_s = after_s
        self.alpha = alpha
        self.backward = backward
        self.eps = eps
        self.threshold = threshold
        self.saturation = saturation
        self.corr_context_s = corr_context_s
        self.corr_signals = corr_signals
        self.scorer = scorer

    def _scorer(self) -> RobustScoreRca:
        return self.scorer or RobustScoreRca(self.before_s, self.after_s)

    def rank(
        self, table: pd.DataFrame, anomaly_time: float, graph: nx.DiGraph | None = None
    ) -> list[Cause]:
        """Every service by walk mass. Without a graph the walk has no direction to follow,
        so the ranking is the robust scorer's (each cause says so in its evidence)."""
        raw, evidence, w = self._scorer().service_scores(table, anomaly_time)
        services = list(raw)
        if graph is None:
            order = sorted(services, key=lambda s: -raw[s])
            note = "no dependency graph: robust scores only"
            return [
                Cause(s, raw[s], {"signals": evidence.get(s, []), "path": [s], "note": note})
                for s in order
            ]
        g = _align(graph, services)
        excess = {s: max(0.0, raw.get(s, 0.0) - self.threshold) for s in g}
        anomaly = {s: 1.0 - math.exp(-excess[s] / self.saturation) for s in g}
        corr = self._correlations(w, evidence, services)
        pos = {svc: j for j, svc in enumerate(services)}
        walk = self._walk_graph(
            g, anomaly, lambda u, v: corr[pos[u], pos[v]] if u in pos and v in pos else 0.0
        )
        person = {s: math.log1p(excess[s]) + 1e-9 for s in g}
        rank = nx.pagerank(walk, alpha=self.alpha, personalization=person, weight="weight")
        observed = [s for s in services if s in rank]
        order = sorted(observed, key=lambda s: (-rank[s], -raw[s]))
        causes = []
        for s in order:
            causes.append(
                Cause(
                    s,
                    float(rank[s]),
                    {
                        "anomaly_score": round(raw[s], 3),
                        "signals": evidence.get(s, []),
                        "path": self._path(g, s, raw),
                    },
                )
            )
        return causes

    def _correlations(
        self, w: Windows, evidence: dict[str, list[dict]], services: list[str]
    ) -> np.ndarray:
        """services × services |corr|: the best pairing of each one's top anomalous signals."""
        context = self.corr_context_s if self.corr_context_s is not None else self.after_s
        start = w.incident_times[0] - context if len(w.incident_times) else -np.inf
        keep = w.normal_times >= start
        index = {c: i for i, c in enumerate(w.columns)}
        k = self.corr_signals
        picks = np.zeros((len(services), k), dtype=np.int64)
        for j, svc in enumerate(services):
            top = [index[e["signal"]] for e in evidence.get(svc, [])[:k]] or [0]
            picks[j] = (top * k)[:k]  # repeat to fill k slots
        x = _standardised(np.vstack([w.normal[keep], w.incident])[:, picks.ravel()])
        c = np.abs(x.T @ x).reshape(len(services), k, len(services), k)
        corr = c.max(axis=(1, 3))
        blind = np.array([not evidence.get(svc) for svc in services])  # no numeric column
        corr[blind, :] = 0.0
        corr[:, blind] = 0.0
        np.fill_diagonal(corr, 1.0)
        return corr

    def _walk_graph(
        self,
        g: nx.DiGraph,
        anomaly: dict[str, float],
        corr: Callable[[str, str], float],
    ) -> nx.DiGraph:
        """The weighted walk graph: forward, backward and self edges (see the module doc)."""
        walk = nx.DiGraph()
        walk.add_nodes_from(g)
        for u, v in g.edges:
            if u == v:
                continue
            forward = self.eps + corr(u, v) * anomaly[v]
            walk.add_edge(u, v, weight=forward)
            back = self.backward * forward
            if walk.has_edge(v, u):
                walk[v][u]["weight"] += back
            else:
                walk.add_edge(v, u, weight=back)
        for u in g:
            children = [anomaly[v] for v in g.successors(u) if v != u]
            own = anomaly[u] - (max(children) if children else 0.0)
            if own > 0:
                walk.add_edge(u, u, weight=own)
        return walk

    @staticmethod
    def _path(g: nx.DiGraph, target: str, raw: dict[str, float]) -> list[str]:
        """Call path from the most anomalous entry (or, failing that, symptom) service that
        reaches the target, down to the target: how the fault would have surfaced."""
        ancestors = nx.ancestors(g, target) | {target}
        entries = [a for a in ancestors if g.in_degree(a) == 0 and raw.get(a, 0.0) > 0]
        pool = entries or [a for a in ancestors if raw.get(a, 0.0) > 0] or [target]
        start = max(pool, key=lambda a: (raw.get(a, 0.0), a == target))
        try:
            return [str(n) for n in nx.shortest_path(g, start, target)]
        except nx.NetworkXNoPath:
            return [target]
