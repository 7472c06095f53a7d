"""What a run will cost before it starts: memory, disk and wall time, from the scenario alone.

Why: a typo (`duration: 1000w`, `replicas: 1e9`, a request-fidelity run at `rate: 1e12`) must
fail in a second with the figure that is out of bounds, not after an hour, in a MemoryError
or with a full disk. The estimates are deliberately simple, fitted to `make bench` on this
project's reference machine (2 cores) and rounded up; they are guards, not predictions, and
`--allow-large` overrides them.

Limits: memory at most half the machine's RAM, disk at most 90% of the free space where the
run directory goes, wall time at most 24 hours.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from twin.errors import FirebreakError
from twin.fields import N_EDGE_METRICS, N_SERVICE_METRICS
from twin.scenario.schema import Scenario

BASE_MEMORY = 600 * 2**20  # interpreter, numpy, numba, pyarrow, the compiled kernel
BYTES_PER_VALUE_ON_DISK = 5.0  # zstd Parquet of the long tables, measured 4.4
LABEL_BYTES_PER_SERVICE_TICK = 2 * 16  # two float32 recorders of four signals (run + replay)
POD_BYTES = 4096  # a pod's record and its SimPy bookkeeping, generously
FLOW_SECONDS_PER_SERVICE_TICK = 2.5e-6  # Train Ticket 24 h: 4.4 s / (86,400 × 42), rounded up
FLOW_SECONDS_PER_TICK = 12e-6  # SimPy and sink overhead per tick
REQUEST_SECONDS_PER_CALL = 8e-6  # request fidelity: ~8,000 requests/CPU-s, Online Boutique
MAX_WALL_S = 24 * 3600.0
DEFAULT_LOG_BYTES_PER_SERVICE_TICK = 40.0  # logs and traces at their default sampling


class BudgetError(FirebreakError):
    """A run would exceed what this machine can give it."""


@dataclass(frozen=True)
class Estimate:
    """A run's cost, each figure an upper-side estimate."""

    ticks: int
    services: int
    edges: int
    memory_bytes: float
    disk_bytes: float
    wall_s: float


def estimate(scenario: Scenario, fidelity: str = "flow", labels: bool = True) -> Estimate:
    """Memory, disk and wall time of one run of `scenario`."""
    topo = scenario.topology
    n = len(topo.services)
    m = len(topo.calls)
    ticks = int(round(scenario.duration / scenario.tick))
    pods = sum(max(s.replicas, s.hpa.max_replicas if s.hpa else 0) for s in topo.services.values())
    memory = BASE_MEMORY + pods * POD_BYTES
    replays = len(scenario.faults) if labels else 0
    if replays:
        memory += ticks * n * LABEL_BYTES_PER_SERVICE_TICK
    disk = ticks * (n * N_SERVICE_METRICS + m * N_EDGE_METRICS) * BYTES_PER_VALUE_ON_DISK
    disk += ticks * n * DEFAULT_LOG_BYTES_PER_SERVICE_TICK
    per_run = ticks * (n * FLOW_SECONDS_PER_SERVICE_TICK + FLOW_SECONDS_PER_TICK)
    wall = per_run * (1 + replays)
    if fidelity == "request":
        rate = sum(c.rate for c in scenario.workload.classes)
        calls_per_request = 1.0 + sum(c.per_request * c.probability for c in topo.calls)
        wall += rate * scenario.duration * calls_per_request * REQUEST_SECONDS_PER_CALL
    return Estimate(ticks, n, m, float(memory), float(disk), float(wall))


def machine_memory() -> float:
    """Physical memory in bytes (a very large number where the OS will not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def free_disk(out: Path) -> float:
    """Free bytes on the file system the run directory will be on."""
    probe = Path(out).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return float(shutil.disk_usage(probe).free)
    except OSError:
        return float("inf")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PiB"


def _hours(s: float) -> str:
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s:,.0f} s"


def check_budget(est: Estimate, out: Path, source: str) -> None:
    """Refuse a run whose estimate passes a limit; the message names the figure, the limit,
    and what to change."""
    shape = f"{est.ticks:,} ticks × {est.services} services"
    problems = []
    memory_limit = 0.5 * machine_memory()
    if est.memory_bytes > memory_limit:
        problems.append(
            f"needs ~{_size(est.memory_bytes)} of memory ({shape}), over half this "
            f"machine's {_size(2 * memory_limit)}; pass --no-labels to drop the label "
            "replays' share"
        )
    disk_limit = 0.9 * free_disk(out)
    if est.disk_bytes > disk_limit:
        problems.append(
            f"writes ~{_size(est.disk_bytes)} ({shape}), over 90% of the "
            f"{_size(disk_limit / 0.9)} free where {out} goes"
        )
    if est.wall_s > MAX_WALL_S:
        problems.append(f"would take ~{_hours(est.wall_s)} of wall time (limit 24 h)")
    if problems:
        raise BudgetError(
            f"{source}: this run "
            + "; it ".join(problems)
            + ". Shorten the duration, shrink the scenario, or pass --allow-large to try anyway"
        )
