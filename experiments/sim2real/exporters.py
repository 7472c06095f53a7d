"""What Nezha's exporters record that the twin does not simulate, fitted to the real table.

Nezha's metric table has 19 kinds per service; the twin simulates the requests, CPU, memory
and latency behind six of them. The rest (syscalls, network bytes, the node's CPU, memory
and network) are what a node-exporter and cAdvisor add: they follow the load and carry
their own noise, and for an RCA method reading the table they are columns that move with
no fault, or with a fault elsewhere on the same node. Measured on the development day
(`firebreak sim2real DATA --days 2023-01-29 --real-kinds simulated --twin-layout rcaeval`),
the real table cut to the kinds the twin simulated lifts BARO from 0.071 to 0.179 and NSigma
from 0.036 to 0.179 AC@1: the extra columns are much of why metric methods fail on real data.

Each such column is fitted on the calibration day's table, less the minutes a pod ran a CPU
stress (`stress_minutes`: the folder covers the whole day, injections included), as
`value = a + b × driver + e`, `a, b ≥ 0` (non-negative least squares); `e` is drawn as a
moving-block bootstrap of the fitted residuals (blocks of `BLOCK` rows), which keeps their
spikes and their autocorrelation. The driver of a service's own columns is its load; of a
node's columns the summed CPU, memory or network of the services the real table shows on
that node (services share a node when their node series are identical), so co-located
services share one node series, as in the real table.

The simulated kinds get the same residuals on top of the twin's value (`NOISE_KINDS`): a
real pod's CPU varies minute to minute far more than its load explains (GC, JIT, timers;
a coefficient of variation of 0.74 on the development day against the twin's 0.05), and
a metric method's z-scores depend on that spread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from detectors.ingest.errors import IngestError
from detectors.ingest.read import read_metrics
from experiments.calibration.fit import CPU_SHARE
from experiments.calibration.stress import stress_mask
from experiments.sim2real.faults import Sim2RealError

LOAD = "PodWorkload(Ops)"
OWN_KINDS = ("SyscallRead", "SyscallWrite", "NetworkReceiveBytes", "NetworkTransmitBytes")
# node kind -> the per-service kind whose sum over the node drives it
NODE_KINDS = {
    "NodeCpuUsageRate(%)": "CpuUsage(m)",
    "NodeMemoryUsageRate(%)": "MemoryUsage(Mi)",
    "NodeNetworkReceiveBytes": "NetworkReceiveBytes",
}
CLIENT_KINDS = ("PodClientLatencyP90(s)", "PodClientLatencyP95(s)", "PodClientLatencyP99(s)")
SERVER_KINDS = ("PodServerLatencyP90(s)", "PodServerLatencyP95(s)", "PodServerLatencyP99(s)")
NOISE_KINDS = ("CpuUsage(m)", "MemoryUsage(Mi)", *SERVER_KINDS)
BLOCK = 5  # rows per bootstrap block: the residuals' autocorrelation lasts a few minutes


@dataclass(frozen=True)
class LinearResidual:
    """`a + b × driver` plus residuals resampled in blocks from the fitted ones."""

    a: float
    b: float
    residuals: np.ndarray

    def noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` rows of residuals, centred: contiguous blocks from random starts."""
        r = self.residuals - self.residuals.mean()
        if n == 0 or len(r) == 0:
            return np.zeros(n)
        block = min(BLOCK, len(r))
        starts = rng.integers(0, len(r) - block + 1, size=-(-n // block))
        return np.concatenate([r[s : s + block] for s in starts])[:n]

    def draw(self, driver: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.maximum(self.a + self.b * driver + self.noise(len(driver), rng), 0.0)


def stress_minutes(table: pd.DataFrame, service: str) -> np.ndarray:
    """Rows where `service` ran a CPU stress, and the minute either side (`stress_mask`):
    the calibration day's table covers the whole day, injections included."""
    column = f"{service}_{CPU_SHARE}"
    if column not in table:
        return np.zeros(len(table), dtype=bool)
    return stress_mask(table[column].to_numpy(float))


def fit_linear(y: np.ndarray, x: np.ndarray) -> LinearResidual | None:
    """The model of one column on its driver; None with under 3 usable rows."""
    ok = np.isfinite(y) & np.isfinite(x)
    y, x = y[ok], x[ok]
    if len(y) < 3:
        return None
    (a, b), _ = nnls(np.column_stack([np.ones_like(x), x]), y)
    return LinearResidual(float(a), float(b), y - a - b * x)


@dataclass(frozen=True)
class ExporterModels:
    """Per service: its own exporter columns and client-latency fallbacks; per real node:
    its services and its node columns."""

    own: dict[str, dict[str, LinearResidual]]
    nodes: list[tuple[tuple[str, ...], dict[str, LinearResidual]]]


def _node_groups(table: pd.DataFrame, services: list[str]) -> list[tuple[str, ...]]:
    """Services whose node CPU series are identical run on one node."""
    groups: dict[tuple, list[str]] = {}
    for s in services:
        column = f"{s}_NodeCpuUsageRate(%)"
        if column not in table:
            continue
        values = np.nan_to_num(table[column].to_numpy(float), nan=-1.0)  # NaN equals NaN
        key = tuple(np.round(values, 6))
        groups.setdefault(key, []).append(s)
    return [tuple(g) for g in groups.values()]


def fit_exporters(metric_dir: Path) -> ExporterModels:
    """Fit every exporter column of a fault-free day's per-pod metric folder."""
    try:
        table = read_metrics(metric_dir).wide()
    except IngestError as exc:
        raise Sim2RealError(f"{metric_dir}: {exc}") from None
    services = sorted(
        {c.split("_", 1)[0] for c in table.columns if f"{c.split('_', 1)[0]}_{LOAD}" in table}
    )
    if not services:
        raise Sim2RealError(f"{metric_dir}: no {LOAD!r} column to fit the exporters on")
    own: dict[str, dict[str, LinearResidual]] = {}
    for s in services:
        load = table[f"{s}_{LOAD}"].to_numpy(float)
        stressed = stress_minutes(table, s)
        models = {}
        for kind in (*OWN_KINDS, *CLIENT_KINDS, *NOISE_KINDS):
            column = f"{s}_{kind}"
            if column not in table:
                continue
            y = np.where(stressed, np.nan, table[column].to_numpy(float))
            if kind in SERVER_KINDS:  # a minute with no request reports 0, not a latency
                y = np.where((load > 0) & (y > 0), y, np.nan)
            model = fit_linear(y, load)
            if model is not None:
                models[kind] = model
        own[s] = models
    nodes = []
    for group in _node_groups(table, services):
        models = {}
        for kind, driver_kind in NODE_KINDS.items():
            y = (
                table[f"{group[0]}_{kind}"].to_numpy(float)
                if f"{group[0]}_{kind}" in table
                else None
            )
            drivers = [f"{s}_{driver_kind}" for s in group if f"{s}_{driver_kind}" in table]
            if y is None or not drivers:
                continue
            model = fit_linear(y, table[drivers].to_numpy(float).sum(axis=1))
            if model is not None:
                models[kind] = model
        nodes.append((group, models))
    return ExporterModels(own, nodes)
