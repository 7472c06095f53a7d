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

from collections.abc import Callable

import numpy as np

from twin.fields import NODE_M
from twin.scenario.infrastructure import Infrastructure

IO_HALF_MS = 50.0  # I/O wait that scores 0.5
DROP_FULL = 0.2  # a 20% packet drop scores 1
_UP, _READY = NODE_M["up"], NODE_M["ready"]
_CPU_OTHER, _MEM_OTHER = NODE_M["cpu_other_cores"], NODE_M["memory_other_mb"]
_IO, _DROP = NODE_M["io_wait_ms"], NODE_M["network_drop_ratio"]


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
        # worst node and zone, kept while badness and drains stay as they were: asked at
        # every step by the observation and again by the action masks
        self._worst: dict[str, tuple[str | None, float]] = {}
        self._worst_of = b""

    @property
    def present(self) -> bool:
        return bool(self.names)

    def _signals(self, mean: np.ndarray) -> np.ndarray:
        """nodes × 6 signals, each 0 when healthy and rising towards 1."""
        out = np.empty((len(self.names), 6))
        out[:, 0] = 1.0 - mean[:, _UP]
        out[:, 1] = 1.0 - mean[:, _READY]
        out[:, 2] = mean[:, _CPU_OTHER] / self._cpu
        out[:, 3] = mean[:, _MEM_OTHER] / self._mem
        io = np.maximum(mean[:, _IO], 0.0)
        out[:, 4] = io / (io + IO_HALF_MS)
        out[:, 5] = mean[:, _DROP] / DROP_FULL
        return np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)

    def update(self, mean: np.ndarray | None) -> None:
        """One interval's nodes × NODE_METRICS mean (None: nothing scraped, no change)."""
        if not self.present or mean is None:
            return
        signals = self._signals(mean)
        self._updates += 1
        if self._updates <= self.warmup:
            self._base += (signals - self._base) / self._updates
            self.badness[:] = 0.0
            return
        rise = np.clip(signals - self._base, 0.0, 1.0)
        self.badness[:] = rise.max(axis=1)

    def note_drain(self, name: str) -> None:
        """The agent drained this node or zone: its nodes are out of the running."""
        for i, (node, zone) in enumerate(zip(self.names, self.zone_of, strict=True)):
            if name in (node, zone):
                self.drained[i] = True

    def worst_node(self) -> tuple[str | None, float]:
        """The undrained node that looks worst and its badness (None without one)."""
        return self._kept("node", self._worst_node)

    def worst_zone(self) -> tuple[str | None, float]:
        """The zone with an undrained node whose healthiest node looks worst."""
        return self._kept("zone", self._worst_zone)

    def _kept(
        self, what: str, work: Callable[[], tuple[str | None, float]]
    ) -> tuple[str | None, float]:
        state = self.badness.tobytes() + self.drained.tobytes()
        if state != self._worst_of:
            self._worst.clear()
            self._worst_of = state
        if what not in self._worst:
            self._worst[what] = work()
        return self._worst[what]

    def _worst_node(self) -> tuple[str | None, float]:
        live = np.flatnonzero(~self.drained)
        if len(live) == 0:
            return None, 0.0
        i = int(live[np.argmax(self.badness[live])])
        return self.names[i], float(self.badness[i])

    def _worst_zone(self) -> tuple[str | None, float]:
        best, score = None, -1.0
        for z, zone in enumerate(self.zones):
            members = self._zone_index == z
            if not (members & ~self.drained).any():
                continue
            value = float(self.badness[members].min())
            if value > score:
                best, score = zone, value
        return best, max(score, 0.0)
