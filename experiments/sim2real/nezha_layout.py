"""A twin run's metric table in Nezha's layout: the same 19 kinds per service as the real one.

The kinds the twin simulates come from its production-like series (per pod, as Nezha's
table averages its pods): CPU and memory and their shares of the limits, load, server
latency quantiles (p90 from the histogram quantiles, `p90_from_quantiles`), and client
latency as the call-weighted server latency of the services it calls (a service that calls
none gets its fitted model). CPU, memory and server latency carry the real residuals the
load does not explain (`NOISE_KINDS`); the shares of the limits follow from them. The
success rate is 0, as Nezha's exporter records it on every row. The rest are drawn from
the exporter models fitted on the calibration day (`experiments.sim2real.exporters`),
driven by the twin's own load, CPU, memory and network, with a seeded noise stream: the
same run and seed give the same table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.sim2real.exporters import (
    CLIENT_KINDS,
    NODE_KINDS,
    NOISE_KINDS,
    OWN_KINDS,
    SERVER_KINDS,
    ExporterModels,
)
from twin.scenario.schema import Scenario
from twin.telemetry.widecsv import p90_from_quantiles, read_cube, resample, unix_time

NEZHA_KINDS = (
    "CpuUsage(m)",
    "CpuUsageRate(%)",
    "MemoryUsage(Mi)",
    "MemoryUsageRate(%)",
    "SyscallRead",
    "SyscallWrite",
    "NetworkReceiveBytes",
    "NetworkTransmitBytes",
    "PodClientLatencyP90(s)",
    "PodServerLatencyP90(s)",
    "PodClientLatencyP95(s)",
    "PodServerLatencyP95(s)",
    "PodClientLatencyP99(s)",
    "PodServerLatencyP99(s)",
    "PodWorkload(Ops)",
    "PodSuccessRate(%)",
    "NodeCpuUsageRate(%)",
    "NodeMemoryUsageRate(%)",
    "NodeNetworkReceiveBytes",
)
_SERVER = {"PodServerLatencyP90(s)": 90, "PodServerLatencyP95(s)": 95, "PodServerLatencyP99(s)": 99}


def _simulated(run_dir: Path, scenario: Scenario) -> tuple[np.ndarray, pd.DataFrame]:
    """Per tick, the simulated kinds per service (per pod where Nezha is per pod)."""
    times, services, metrics, cube = read_cube(run_dir)
    metrics = list(metrics)
    spec = scenario.topology.services
    columns: dict[str, np.ndarray] = {}
    for i, s in enumerate(services):

        def get(m: str, i: int = i) -> np.ndarray:
            return np.nan_to_num(cube[:, i, metrics.index(m)], nan=0.0)

        pods = np.maximum(get("ready_replicas"), 1.0)
        cpu = get("cpu_cores") / pods
        memory = get("memory_mb")
        p50, p95, p99 = (get(f"latency_p{p}_ms") / 1000.0 for p in (50, 95, 99))
        busy = get("arrival_rate") > 0
        columns[f"{s}_CpuUsage(m)"] = 1000.0 * cpu
        columns[f"{s}_CpuUsageRate(%)"] = 100.0 * cpu / spec[s].cpu_limit
        columns[f"{s}_MemoryUsage(Mi)"] = memory
        columns[f"{s}_MemoryUsageRate(%)"] = 100.0 * memory / spec[s].memory_limit_mb
        columns[f"{s}_PodServerLatencyP90(s)"] = np.where(
            busy, p90_from_quantiles(p50, p95, p99), 0.0
        )
        columns[f"{s}_PodServerLatencyP95(s)"] = np.where(busy, p95, 0.0)
        columns[f"{s}_PodServerLatencyP99(s)"] = np.where(busy, p99, 0.0)
        columns[f"{s}_PodWorkload(Ops)"] = get("arrival_rate") / pods
    edge_file = run_dir / "edge_metrics.parquet"
    if edge_file.is_file():
        _, edges, edge_metrics, edge_cube = read_cube(edge_file, entity="edge")
        k = list(edge_metrics).index("call_rate")
        for j, edge in enumerate(edges):
            columns[f"edge:{edge}"] = np.nan_to_num(edge_cube[:, j, k], nan=0.0)
    return times, pd.DataFrame(columns)


def _client_latency(rows: pd.DataFrame, service: str, kind: str) -> np.ndarray | None:
    """The call-weighted server latency of the services `service` calls (None: it calls
    none, or never did in the run)."""
    server = kind.replace("Client", "Server")
    weights, values = [], []
    for column in rows.columns:
        if column.startswith(f"edge:{service}->"):
            callee = column.split("->", 1)[1]
            if f"{callee}_{server}" in rows:
                weights.append(rows[column].to_numpy(float))
                values.append(rows[f"{callee}_{server}"].to_numpy(float))
    if not weights:
        return None
    w, v = np.array(weights), np.array(values)
    total = w.sum(axis=0)
    if not (total > 0).any():
        return None
    return np.where(total > 0, (w * v).sum(axis=0) / np.where(total > 0, total, 1.0), 0.0)


def nezha_table(
    run_dir: Path, scenario: Scenario, models: ExporterModels, step_s: float, seed: int
) -> pd.DataFrame:
    """The run's metric table in Nezha's layout, averaged over `step_s` windows."""
    times, per_tick = _simulated(Path(run_dir), scenario)
    sim_time, rows = resample(times, per_tick, step_s)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1917]))
    services = [s for s in scenario.topology.services if f"{s}_PodWorkload(Ops)" in rows]
    out: dict[str, np.ndarray] = {}
    spec = scenario.topology.services
    for s in services:  # first every service's noise: client latency reads its callees'
        fitted = models.own.get(s, {})
        for kind in NOISE_KINDS:
            column = f"{s}_{kind}"
            if kind in fitted and column in rows:
                value = rows[column].to_numpy(float)
                noisy = np.maximum(value + fitted[kind].noise(len(value), rng), 0.0)
                # a minute with no request, or a pod using no CPU at all, stays at 0
                rows[column] = (
                    np.where(value > 0, noisy, 0.0) if kind != "MemoryUsage(Mi)" else noisy
                )
        quantiles = [f"{s}_{k}" for k in SERVER_KINDS]
        if all(q in rows for q in quantiles):  # noise must not put p99 below p90
            rows[quantiles] = np.maximum.accumulate(rows[quantiles].to_numpy(float), axis=1)
        rows[f"{s}_CpuUsageRate(%)"] = rows[f"{s}_CpuUsage(m)"] / 10.0 / spec[s].cpu_limit
        rows[f"{s}_MemoryUsageRate(%)"] = (
            100.0 * rows[f"{s}_MemoryUsage(Mi)"] / spec[s].memory_limit_mb
        )
    for s in services:
        load = rows[f"{s}_PodWorkload(Ops)"].to_numpy(float)
        fitted = models.own.get(s, {})
        for kind in NEZHA_KINDS:
            column = f"{s}_{kind}"
            if column in rows:
                out[column] = rows[column].to_numpy(float)
            elif kind == "PodSuccessRate(%)":
                out[column] = np.zeros(len(rows))
            elif kind in CLIENT_KINDS:
                value = _client_latency(rows, s, kind)
                if value is None and kind in fitted:
                    value = fitted[kind].draw(load, rng)
                out[column] = value if value is not None else np.zeros(len(rows))
            elif kind in OWN_KINDS and kind in fitted:
                out[column] = fitted[kind].draw(load, rng)
    for group, node_models in models.nodes:
        present = [s for s in group if s in services]
        if not present:
            continue
        for kind, driver_kind in NODE_KINDS.items():
            if kind not in node_models:
                continue
            drivers = [out[f"{s}_{driver_kind}"] for s in present if f"{s}_{driver_kind}" in out]
            driver = np.sum(drivers, axis=0) if drivers else np.zeros(len(rows))
            series = node_models[kind].draw(driver, rng)
            for s in present:
                out[f"{s}_{kind}"] = series
    ordered = {"time": unix_time(sim_time.to_numpy(dtype=float))}
    for s in services:
        for kind in NEZHA_KINDS:
            if f"{s}_{kind}" in out:
                ordered[f"{s}_{kind}"] = out[f"{s}_{kind}"]
    return pd.DataFrame(ordered)
