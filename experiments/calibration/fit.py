"""A runnable scenario fitted to a real system's telemetry: traces (span CSV or OTLP JSON,
read by detectors.ingest) and, when there, per-pod metric CSVs (the Nezha layout).

From the traces (twin.scenario.trace_scenario): topology, calls per request, own-latency
distributions, timeouts and retries, the entry rate. From the metrics: replicas (pods per
service), memory per pod (its mean working set), and a pod's CPU as idle cores plus CPU per
request: non-negative least squares of its CPU on its request rate over the recorded minutes
(intercept: the runtime's own use, which a real JVM or Go service has even with no traffic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from detectors.ingest.errors import IngestError
from detectors.ingest.names import service_of_pod
from detectors.ingest.read import read_traces
from experiments.calibration.stress import stress_mask
from twin.errors import FirebreakError
from twin.scenario.trace_files import RawSpan
from twin.scenario.trace_scenario import scenario_from_spans

CPU_COLUMN, MEMORY_COLUMN, LOAD_COLUMN = "CpuUsage(m)", "MemoryUsage(Mi)", "PodWorkload(Ops)"
CPU_SHARE, MEMORY_SHARE = "CpuUsageRate(%)", "MemoryUsageRate(%)"  # of the pod's limits
TIME_COLUMN = "TimeStamp"  # unix seconds


class CalibrationError(FirebreakError):
    """Telemetry a scenario cannot be fitted to; the message names the folder or file."""


def _folder(root: Path, name: str) -> Path | None:
    sub = root / name
    return sub if sub.is_dir() else None


def raw_spans(frame: pd.DataFrame) -> list[RawSpan]:
    """detectors.ingest's span frame (seconds) as the importer's spans (microseconds)."""
    kinds = frame["kind"].astype(str).replace({"": None, "unspecified": None})
    error = frame["error"].fillna(0.0).astype(float) > 0
    return [
        RawSpan(trace=t, span_id=s, parent=p or None, service=svc, kind=k, start=a * 1e6,
                end=b * 1e6, error=bool(e), attrs={"peer.service": peer} if peer else {})
        for t, s, p, svc, k, a, b, e, peer in zip(
            frame["trace"], frame["span"], frame["parent"], frame["service"], kinds,
            frame["start"], frame["end"], error, frame["peer"].astype(str), strict=True)
    ]  # fmt: skip


def read_spans_dir(root: Path) -> list[RawSpan]:
    """Every span under `root/trace` (or `root` itself)."""
    traces = _folder(root, "trace") or root
    try:
        frame, _ = read_traces(traces)
    except IngestError as exc:
        raise CalibrationError(str(exc)) from None
    if frame.empty:
        raise CalibrationError(f"{traces}: no spans")
    return raw_spans(frame)


def pod_metrics(root: Path) -> pd.DataFrame:
    """Per-pod CPU (cores), memory (MiB), load (requests/s) and time (unix s) per minute, from
    `root/metric/<pod>_metric.csv[.gz]`; empty when there is no such folder. Minutes of an
    injected CPU stress (`stress_mask`) are left out."""
    folder = _folder(root, "metric")
    if folder is None:
        return pd.DataFrame(
            columns=[
                "service", "pod", "cpu", "memory", "load", "cpu_limit", "memory_limit", "time",
                "file",
            ]
        )  # fmt: skip
    rows = []
    for path in sorted(folder.glob("*_metric.csv*")):
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{path}: cannot read as CSV: {exc}") from None
        missing = [c for c in (CPU_COLUMN, MEMORY_COLUMN, LOAD_COLUMN) if c not in frame]
        if missing:
            raise CalibrationError(f"{path}: no column {missing[0]!r}")
        pod = path.name.split("_metric.csv")[0]
        cpu_m = pd.to_numeric(frame[CPU_COLUMN], errors="coerce")
        mem = pd.to_numeric(frame[MEMORY_COLUMN], errors="coerce")
        share = {
            k: pd.to_numeric(frame[c], errors="coerce") / 100.0 if c in frame else np.nan
            for k, c in (("cpu", CPU_SHARE), ("memory", MEMORY_SHARE))
        }
        if CPU_SHARE in frame:  # the day's CPU-stress injections are not the pod's own use
            order = np.argsort(pd.to_numeric(frame.get(TIME_COLUMN, frame.index), "coerce"))
            stressed = np.zeros(len(frame), dtype=bool)
            stressed[order] = stress_mask(100.0 * share["cpu"].to_numpy(float)[order])
            cpu_m = cpu_m.where(~stressed)
        rows.append(
            pd.DataFrame(
                {
                    "service": service_of_pod(pod),
                    "pod": pod,
                    "cpu": cpu_m / 1000.0,
                    "memory": mem,
                    "load": pd.to_numeric(frame[LOAD_COLUMN], errors="coerce"),
                    # the limits, where the usage is also given as a share of them
                    "cpu_limit": cpu_m / 1000.0 / share["cpu"].where(share["cpu"] > 0),
                    "memory_limit": mem / share["memory"].where(share["memory"] > 0),
                    "time": pd.to_numeric(frame[TIME_COLUMN], errors="coerce")
                    if TIME_COLUMN in frame
                    else np.nan,
                    "file": path.name,  # where a row came from, for messages
                }
            )
        )
    if not rows:
        return pod_metrics(Path("/nonexistent"))
    return pd.concat(rows, ignore_index=True).dropna(subset=["cpu", "memory", "load"])


def idle_and_per_request(cpu: np.ndarray, load: np.ndarray) -> tuple[float, float]:
    """(idle cores, CPU-milliseconds per request): cpu ≈ idle + per_request × load with both
    non-negative. Without spread in the load there is no slope to fit: the mean ratio when
    there is traffic, else all of it idle."""
    ok = np.isfinite(cpu) & np.isfinite(load)
    cpu, load = cpu[ok], load[ok]
    if len(cpu) == 0:
        return 0.0, 0.0
    if len(cpu) < 3 or np.ptp(load) <= 0:
        if load.mean() > 0:
            return 0.0, 1000.0 * float(cpu.mean() / load.mean())
        return float(max(cpu.mean(), 0.0)), 0.0
    design = np.column_stack([np.ones_like(load), load])
    (idle, slope), _ = nnls(design, cpu)
    return float(idle), 1000.0 * float(slope)


def _from_metrics(metrics: pd.DataFrame):
    """An `adjust(analysis, topology)` hook writing replicas, memory and CPU per request."""

    def adjust(_analysis: Any, topology: dict[str, Any]) -> None:
        services = topology["services"]
        for name in sorted(set(metrics["service"]) - set(services)):
            # a deployment the traces never reached still runs, burns idle CPU and shows
            # in every metric table (an RCA method must rank it too): kept, with no calls
            services[name] = {
                "description": "calibrated: seen in pod metrics only (no traced requests)",
                "service_time": {"mean_ms": 1.0},
            }
        for name, entry in services.items():
            rows = metrics[metrics["service"] == name]
            if rows.empty:
                continue
            entry["replicas"] = int(rows["pod"].nunique())
            memory = float(rows.groupby("pod")["memory"].mean().mean())
            entry["memory_base_mb"] = round(memory, 1)
            mem_limit = float(rows["memory_limit"].median())
            if not np.isfinite(mem_limit) or mem_limit <= memory:
                mem_limit = 2.0 * memory
            entry["memory_limit_mb"] = round(max(mem_limit, 1.0), 1)
            per_pod = rows.groupby("pod")
            cpu = float(per_pod["cpu"].mean().sum())
            load = float(per_pod["load"].mean().sum())
            idle, per_req = idle_and_per_request(rows["cpu"].to_numpy(), rows["load"].to_numpy())
            own = entry["service_time"]["mean_ms"]
            # no more CPU than the request's own time on one core
            entry["cpu_per_request_ms"] = round(min(per_req, own), 3)
            limit = float(rows["cpu_limit"].median())
            if not np.isfinite(limit) or limit <= 0:
                limit = max(4.0 * cpu / entry["replicas"], entry.get("cpu_limit", 0.2))
            entry["cpu_limit"] = round(limit, 3)
            entry["cpu_idle_cores"] = round(min(idle, 0.5 * limit), 4)  # requests keep half
            entry["cpu_request"] = round(limit / 2.0, 3)
            entry.setdefault("description", f"calibrated: {load:.3g} req/s, {cpu:.3g} cores")

    return adjust


def calibrate(
    root: str | Path, *, name: str | None = None, duration: float = 3600.0, seed: int = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A scenario (plain data) and a summary from a telemetry folder."""
    root = Path(root)
    if not root.is_dir():
        raise CalibrationError(f"{root}: not a folder of telemetry (trace/ and metric/)")
    spans = read_spans_dir(root)
    metrics = pod_metrics(root)
    scenario, summary = scenario_from_spans(
        spans, root, name=name or root.name, duration=duration, seed=seed,
        adjust=_from_metrics(metrics),
    )  # fmt: skip
    summary["pods"] = int(metrics["pod"].nunique()) if len(metrics) else 0
    return scenario, summary
