"""The closed loop on production-like telemetry: what the operator sees is what the run
directory's production writer (twin.telemetry.observe.writer) records, as it records it.

The rehearsal's run directory is written by `ProductionWriter`, a sink of the simulation.
`ObservedFeed` subscribes to it and has the engine hand its sinks the ticks every few
seconds (`Simulation.hand_over_every`) instead of once an hour, so the writer's 15 s
PromQL steps (scrapes with jitter and losses, rate() windows, histogram quantiles, counter
resets, confounders) reach the operator while the run goes. There is one model of scraping:
the rows the operator reads are the rows `metrics.parquet` holds, not a second copy.

No look-ahead: the writer evaluates a step only once every scrape at or before it has been
drawn, from ticks the twin has already simulated, and a rate() window ending at t uses only
scrapes ≤ t. The price is a lag: a step reaches the operator up to one scrape interval (plus
the jitter and one hand-over) after its time, as a rule evaluated behind the scrapes would.
Kubernetes events (rollouts, pod placements) are not scraped metrics; the operator keeps
reading them from each tick, as it would from the API server's event stream. The benign
rollouts the writer draws as confounders (twin.telemetry.observe.confounders) are rollouts
too, so they reach the operator as the same `deploy` events as a faulty release's (with the
step that first shows them): a change seen near an incident is a suspect, not a verdict.
"""

from __future__ import annotations

import numpy as np

from twin.flow.engine import Simulation
from twin.telemetry.frame import Frame
from twin.telemetry.observe.writer import ProductionWriter

# ticks per hand-over, as a share of the scrape interval: a third keeps the lag near one
# interval without calling every sink on every tick
HANDOVER_SHARE = 1.0 / 3.0


class ObservedFeed:
    """The observed steps of a run as `Frame`s (services × SERVICE_METRICS at `step_s`),
    handed out once the writer has recorded them."""

    def __init__(self, sim: Simulation, *, keep: bool = False) -> None:
        writers = [s for s in sim.sinks if isinstance(s, ProductionWriter)]
        if len(writers) != 1:
            raise ValueError("production telemetry in the loop needs one production run writer")
        writer = writers[0]
        cfg = writer.cfg
        self.step_s = float(cfg.step_s)
        self.services = sim.topo.names
        self.edges = sim.topo.edges
        self.nodes = sim.node_names
        self._n_edges = len(self.edges)
        self._pending: list[Frame] = []
        self._edge: dict[float, np.ndarray] = {}
        self._node: dict[float, np.ndarray] = {}
        self._last_edge = np.zeros((self._n_edges, writer.edge_metrics.metrics.__len__()))
        self._last_node: np.ndarray | None = None
        # with keep: every frame handed out and the sim time it was handed out at (tests)
        self.kept: list[tuple[float, Frame]] | None = [] if keep else None
        self._sim = sim
        self._rollouts = sorted(
            (c.start, c.service) for c in writer.confounders if c.kind == "deploy"
        )
        writer.listeners.append(self._on_rows)
        sim.hand_over_every(max(1, int(round(cfg.scrape_interval_s * HANDOVER_SHARE / sim.dt))))

    def _on_rows(self, kind: str, times: np.ndarray, block: np.ndarray) -> None:
        if kind == "edge":
            self._edge.update({round(float(t), 6): b for t, b in zip(times, block, strict=True)})
            return
        if kind == "node":
            self._node.update({round(float(t), 6): b for t, b in zip(times, block, strict=True)})
            return
        for t, values in zip(times, block, strict=True):
            key = round(float(t), 6)
            # edges and nodes are step means, complete before the step's scrapes are
            edge = self._edge.pop(key, None)
            if edge is not None:
                self._last_edge = edge
            node = self._node.pop(key, None)
            if node is not None:
                self._last_node = node
            self._pending.append(
                Frame(
                    time=float(t),
                    values=np.array(values, dtype=float),
                    edge_values=self._last_edge.copy(),
                    services=self.services,
                    edges=self.edges,
                    events=self._rollouts_until(float(t)),
                    node_values=None if self._last_node is None else self._last_node.copy(),
                    nodes=self.nodes if self._last_node is not None else (),
                )
            )
        for old in [k for k in self._edge if k < times[-1] - 1e-6]:
            self._edge.pop(old)
        for old in [k for k in self._node if k < times[-1] - 1e-6]:
            self._node.pop(old)

    def _rollouts_until(self, t: float) -> list[dict]:
        """The benign rollouts started by `t` not handed out yet, as the cluster reports a
        rollout (no word of whether the version is good)."""
        due = [r for r in self._rollouts if r[0] <= t + 1e-9]
        self._rollouts = self._rollouts[len(due) :]
        return [{"kind": "deploy", "service": svc, "time": round(start, 3)} for start, svc in due]

    def take(self) -> list[Frame]:
        """The steps recorded since the last call, oldest first."""
        out, self._pending = self._pending, []
        if self.kept is not None:
            now = self._sim.now
            self.kept.extend((now, f) for f in out)
        return out
