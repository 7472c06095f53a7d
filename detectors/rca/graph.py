"""A dependency graph that stays current: the declared topology, corrected by traces.

A declared topology goes stale (a new dependency ships, an old one is retired, a feature
flag reroutes calls); the traces show what really calls what. `DependencyGraph` starts from
the declared call graph and learns from sampled calls (twin `Span`s or `EdgeCall`s):

- calls are counted per edge in tumbling windows of `window_s`; when a window closes, each
  traced edge's rate (sampled calls per second) moves toward the window's count by
  `smoothing` (an exponentially weighted mean, so a window without calls pulls it down:
  an edge no longer called decays toward zero instead of keeping its old weight);
- an edge seen in traces but not declared is added; one unseen for `forget_s` is dropped
  again unless it was declared;
- with no traces yet (or none for an edge) the declared topology is the fallback.

Edge attributes of `graph()`: `weight` (the traced rate where traces saw the edge, else the
declared expected calls per request: both "how much traffic", in different units),
`rate`, `declared`, `traced` (seen within `forget_s`), `last_seen` (end of the last window
that saw it, or None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from detectors.anomaly.traces import EdgeCall, edge_calls, read_edge_calls
from twin.scenario.topology import Topology
from twin.telemetry.spans import Span


@dataclass
class _Edge:
    declared_weight: float | None = None
    rate: float = 0.0
    last_seen: float | None = None
    calls: int = 0


class DependencyGraph:
    """Callers → callees, declared and traced, weighted by recent call rates."""

    def __init__(
        self,
        topology: Topology | nx.DiGraph | None = None,
        *,
        window_s: float = 60.0,
        smoothing: float = 0.2,
        forget_s: float = 3600.0,
    ) -> None:
        if window_s <= 0 or not 0 < smoothing <= 1 or forget_s <= 0:
            raise ValueError("window_s and forget_s must be > 0 and smoothing in (0, 1]")
        self.window_s = window_s
        self.smoothing = smoothing
        self.forget_s = forget_s
        self._nodes: dict[str, None] = {}
        self._edges: dict[tuple[str, str], _Edge] = {}
        self._window_start: float | None = None
        self._counts: dict[tuple[str, str], int] = {}
        self.now: float | None = None
        if topology is not None:
            declared = topology.graph() if isinstance(topology, Topology) else topology
            self._nodes.update(dict.fromkeys(map(str, declared.nodes)))
            for u, v, data in declared.edges(data=True):
                edge = self._edges.setdefault((str(u), str(v)), _Edge())
                edge.declared_weight = float(data.get("weight", 1.0))

    @classmethod
    def from_traces(
        cls, path: str | Path, topology: Topology | nx.DiGraph | None = None, **kwargs: Any
    ) -> DependencyGraph:
        """A graph updated with every call in a trace file (a run's `traces.json`)."""
        graph = cls(topology, **kwargs)
        calls = read_edge_calls(path)
        graph.observe(calls)
        if calls:
            graph.advance(calls[-1].time + graph.window_s)
        return graph

    def observe(self, items: Iterable[Span | EdgeCall]) -> None:
        """Count a batch of calls; spans become calls batch-wise (a server span needs its
        parent in the same batch when its client span names no peer)."""
        items = list(items)
        spans = [s for s in items if isinstance(s, Span)]
        calls = [c for c in items if isinstance(c, EdgeCall)]
        if spans:
            calls = sorted(calls + edge_calls(spans), key=lambda c: c.time)
        for call in calls:
            self._count(call)

    def _count(self, call: EdgeCall) -> None:
        if self._window_start is None:
            self._window_start = math.floor(call.time / self.window_s) * self.window_s
        self.advance(call.time)
        key = (call.caller, call.callee)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._nodes.setdefault(call.caller, None)
        self._nodes.setdefault(call.callee, None)

    def advance(self, now: float) -> None:
        """Close every window that ended by `now` (a late call counts in the open window);
        a run of empty windows is closed at once, each one decaying every traced rate."""
        self.now = now if self.now is None else max(self.now, now)
        if self._window_start is None or now < self._window_start + self.window_s:
            return
        windows = math.floor((now - self._window_start) / self.window_s)
        self._close_window()
        if windows > 1:
            decay = (1.0 - self.smoothing) ** (windows - 1)
            for edge in self._edges.values():
                if edge.last_seen is not None:
                    edge.rate *= decay
            self._window_start += (windows - 1) * self.window_s

    def _close_window(self) -> None:
        end = self._window_start + self.window_s
        s = self.smoothing
        for key, edge in self._edges.items():
            if edge.last_seen is not None and key not in self._counts:
                edge.rate *= 1.0 - s
        for key, n in self._counts.items():
            edge = self._edges.setdefault(key, _Edge())
            observed = n / self.window_s
            edge.rate = observed if edge.last_seen is None else (1 - s) * edge.rate + s * observed
            edge.last_seen = end
            edge.calls += n
        self._counts = {}
        self._window_start = end

    def graph(self) -> nx.DiGraph:
        """The current graph (see the module doc for its edge attributes)."""
        g = nx.DiGraph()
        g.add_nodes_from(self._nodes)
        now = self.now
        for (u, v), edge in self._edges.items():
            recent = edge.last_seen is not None and (
                now is None or now - edge.last_seen <= self.forget_s
            )
            declared = edge.declared_weight is not None
            if not (declared or recent):
                continue
            weight = edge.rate if edge.last_seen is not None else edge.declared_weight
            g.add_edge(
                u,
                v,
                weight=float(weight),
                rate=edge.rate,
                declared=declared,
                traced=recent,
                last_seen=edge.last_seen,
            )
        return g
