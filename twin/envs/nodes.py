"""Which node and which zone look sick, from the node series a cluster's monitoring scrapes.

node-exporter and kube-state-metrics report, per node, whether it answers (`up`), its Ready
condition, the CPU and memory used outside the topology's pods, the I/O wait a write sees
and the share of packets its interface drops (`twin.fields.NODE_METRICS`). A node fault
moves one of them on one node; a zone outage takes every node of a zone. `NodeWatch` turns
a decision interval's mean of those series into one badness per node in [0, 1] (the
largest rise of any signal above the node's own baseline from the fault-free warm-up), the
worst node, and the worst zone (a zone is as sick as its healthiest node, so one bad node
never makes its zone look down). Nodes the agent drained are left out: it knows it did.

Never reads the fault schedule: only the series, the nodes' declared sizes and the agent's
own drains.
"""

from __future__ import annotations

import numpy as np

from twin.envs import fast
from twin.scenario.infrastructure import Infrastructure

IO_HALF_MS = 50.0  # I/O wait that scores 0.5
DROP_FULL = 0.2  # a 20% packet drop scores 1


class NodeWatch:
    """Badness per node and zone, worst node and zone; empty without infrastructure."""

    def __init__(self, infra: Infrastructure | None, warmup: int) -> None:
        nodes = infra.node_list() if infra is not None else []
        self.names: tuple[str, ...] = tuple(n.name for n in nodes)
        self.zone_of: tuple[str, ...] = tuple(n.zone for n in nodes)
        self.zones: tuple[str, ...] = tuple(dict.fromkeys(self.zone_of))
        self._cpu = np.array([n.cpu for n in nodes], float)
        self._mem = np.array([n.memory_mb for n in nodes], float)
        self.warmup = max(int(warmup), 1)
        self._updates = 0
        self._base = np.zeros((len(nodes), 6))
        self.badness = np.zeros(len(nodes))
        self.drained = np.zeros(len(nodes), bool)
        self._zone_index = np.array([self.zones.index(z) for z in self.zone_of], np.int64)

    @property
    def present(self) -> bool:
        return bool(self.names)

    def update(self, series: np.ndarray | None) -> None:
        """One interval's node series: their mean (nodes × NODE_METRICS) or its rows (ticks ×
        nodes × NODE_METRICS, averaged here). None or no rows: nothing scraped, no change."""
        if not self.present or series is None or not len(series):
            return
        block = series[None] if series.ndim == 2 else series
        self._updates += 1
        fast.node_update(
            block, self._cpu, self._mem, IO_HALF_MS, DROP_FULL, self._base, self._updates,
            self.warmup, self.badness,
        )  # fmt: skip

    def note_drain(self, name: str) -> None:
        """The agent drained this node or zone: its nodes are out of the running."""
        for i, (node, zone) in enumerate(zip(self.names, self.zone_of, strict=True)):
            if name in (node, zone):
                self.drained[i] = True

    def worst_node(self) -> tuple[str | None, float]:
        """The undrained node that looks worst and its badness (None without one)."""
        node, value = self._worst()[:2]
        return (self.names[node], value) if node >= 0 else (None, 0.0)

    def worst_zone(self) -> tuple[str | None, float]:
        """The zone with an undrained node whose healthiest node looks worst."""
        zone, value = self._worst()[2:]
        return (self.zones[zone], value) if zone >= 0 else (None, 0.0)

    def _worst(self) -> tuple[int, float, int, float]:
        """(node, its badness, zone, its badness), -1 where there is none: one compiled
        call, asked by the observation and the action masks at every step."""
        return fast.worst_node_zone(self.badness, self.drained, self._zone_index, len(self.zones))
