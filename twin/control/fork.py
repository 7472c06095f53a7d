"""What-if dry runs: try actions in a fork of a run's present and keep what the fork saw.

`Simulation.fork` does the work (a deterministic replay, then divergence); these helpers
collect a fork's telemetry in memory so candidate remediations can be compared side by
side, including "do nothing", before one is tried on the real run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin import fields as f
from twin.control.actions import Action
from twin.flow.engine import Simulation
from twin.telemetry.frame import Chunk


@dataclass(frozen=True)
class Telemetry:
    """A run's telemetry over a span: times (T), values (T × services × metrics), events."""

    times: np.ndarray
    values: np.ndarray
    edge_values: np.ndarray
    dist: np.ndarray
    events: list[dict[str, Any]]
    services: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]

    def series(self, service: str, metric: str) -> np.ndarray:
        """One metric of one service over the span."""
        return self.values[:, self.services.index(service), f.M[metric]]


class Recorder:
    """A sink that keeps every chunk in memory (fine for a fork's horizon, not for weeks)."""

    def __init__(self, services: tuple[str, ...], edges: tuple[tuple[str, str], ...]) -> None:
        self.services, self.edges = services, edges
        self.chunks: list[Chunk] = []

    def on_chunk(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    def close(self) -> None:
        pass

    def telemetry(self) -> Telemetry:
        n, m = len(self.services), len(self.edges)

        def stack(name: str, shape: tuple[int, ...]) -> np.ndarray:
            parts = [getattr(c, name) for c in self.chunks]
            return np.concatenate(parts) if parts else np.zeros((0, *shape))

        return Telemetry(
            times=stack("times", ()),
            values=stack("values", (n, f.N_SERVICE_METRICS)),
            edge_values=stack("edge_values", (m, f.N_EDGE_METRICS)),
            dist=stack("dist", (n, len(f.DIST_FIELDS))),
            events=[e for c in self.chunks for e in c.events],
            services=self.services,
            edges=self.edges,
        )


def what_if(
    sim: Simulation,
    actions: Sequence[Action] = (),
    *,
    at: float | None = None,
    horizon: float | None = None,
) -> Telemetry:
    """Fork `sim` at `at` (default: now), apply `actions` there, simulate `horizon` seconds
    (default: to the end) and return the fork's telemetry from `at` on. `sim` is untouched."""
    if horizon is not None and not horizon >= 0:
        raise ValueError(f"horizon must be >= 0 seconds, got {horizon!r}")
    recorder = Recorder(sim.topo.names, sim.topo.edges)
    child = sim.fork(at, sinks=[recorder])
    for action in actions:
        child.act(action)
    if horizon is not None:
        child.advance(min(child.now + horizon, child.end))
        child.finish()
    else:
        child.run()
    return recorder.telemetry()


def compare(
    sim: Simulation,
    options: Mapping[str, Sequence[Action]],
    *,
    at: float | None = None,
    horizon: float | None = None,
) -> dict[str, Telemetry]:
    """`what_if` for each named option (include an empty one for the do-nothing baseline)."""
    return {name: what_if(sim, acts, at=at, horizon=horizon) for name, acts in options.items()}
