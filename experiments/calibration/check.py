"""A calibrated scenario against a held-out period of the real system: per service, the
request rate, mean and p90 latency of its requests (its spans whose parent is elsewhere)
and its CPU, real beside simulated.

The twin is run (flow fidelity, ideal telemetry) at the held-out period's entry rate, so
the comparison is of the model, not of the load; latency statistics weight each tick by
the requests it served, and p90 comes from each tick's shifted lognormal.

A day of incidents (a folder with a fault list, Nezha's `rca_data/<day>`) is compared by its
fault-free parts only (`fault_free`), with each busy service's real mean latency by hour of
those windows, since a real system drifts over a day.

Traces and pod metrics need not cover the same window (Nezha's traces are a minute or
three, its metrics half a day, and they need not overlap): latency is compared at the traces'
rate, CPU at the load the pods recorded while their CPU was measured.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experiments.calibration import fault_free
from experiments.calibration.fit import CalibrationError, pod_metrics, read_spans_dir
from twin.run.runner import run_scenario
from twin.scenario.import_traces import analyse
from twin.scenario.loader import load_scenario
from twin.telemetry.exposition import dist_from_quantiles
from twin.telemetry.widecsv import read_cube

Z90 = 1.2815515655446004
MIN_RATE = 1.0  # requests/s: the services the acceptance figures are about
TARGETS = {"mean": 0.15, "p90": 0.25, "cpu": 0.20}


def observed(root: Path) -> tuple[dict[str, dict[str, float]], float]:
    """Per service: rate, mean_ms, p90_ms, cpu (cores); and the entry rate. A day of
    incidents (a folder with a fault list) counts only its fault-free parts."""
    return observed_period(root)[:2]


def observed_period(root: Path) -> tuple[dict[str, dict[str, float]], float, str | None]:
    """`observed`, and a line saying which parts of a day of incidents were counted (None
    for a folder without faults)."""
    spans = read_spans_dir(root)
    metrics = pod_metrics(root)
    injected = fault_free.injections(root)
    note = None
    if injected is None:
        a = analyse(spans)
        starts = [s.start for s in a.root_spans]
        span_s = max((max(starts) - min(starts)) / 1e6, 1e-9)
        arrivals = len(starts) - 1
    else:
        normal = fault_free.normal_traces(spans, injected)
        if normal.intervals < 1 or normal.covered_s <= 0:
            raise CalibrationError(
                f"{root}: no fault-free traces between its {len(injected)} faults"
            )
        a = analyse(normal.spans)
        span_s, arrivals = normal.covered_s, normal.intervals
        kept = fault_free.normal_minutes(metrics, injected, root / "metric")
        note = (
            f"fault-free parts of {root}: {len(a.root_spans)} traces in {normal.windows} "
            f"windows before injections ({span_s:.0f} s), {len(kept)} of {len(metrics)} pod "
            f"metric minutes (each fault's {fault_free.FAULT_S + fault_free.SETTLE_S:.0f} s "
            f"from its injection left out)"
        )
        metrics = kept
    pods = metrics.groupby(["service", "pod"])
    cpu = pods["cpu"].mean().groupby("service").sum()
    load = pods["load"].mean().groupby("service").sum()
    out = {}
    for svc, reqs in a.requests.items():
        ms = np.array([(r.end - r.start) / 1000.0 for r in reqs])
        out[svc] = {
            "rate": len(ms) / span_s,
            "mean_ms": float(ms.mean()),
            "p90_ms": float(np.quantile(ms, 0.9)),
            "cpu": float(cpu.get(svc, np.nan)),
            "metric_rate": float(load.get(svc, np.nan)),
        }
        if injected is not None:  # how the real figure moved over the day's windows
            hours = (np.array([r.start for r in reqs]) // 3.6e9).astype(int) % 24
            out[svc]["mean_ms_by_hour"] = {
                int(h): float(ms[hours == h].mean()) for h in np.unique(hours)
            }
    return out, arrivals / span_s, note


def metric_window_scale(real: dict[str, dict[str, float]]) -> float | None:
    """The pods' recorded load over the traces' rate, the median across services: how much
    busier the traces' window was than the window the CPU was measured in. None when the
    metrics carry no load."""
    ratios = [
        v["metric_rate"] / v["rate"]
        for v in real.values()
        if v["rate"] > 0 and np.isfinite(v.get("metric_rate", np.nan)) and v["metric_rate"] > 0
    ]
    return float(np.median(ratios)) if ratios else None


def simulated(scenario: dict[str, Any], entry_rate: float, hours: float = 1.0) -> dict:
    """Per service in a run of the scenario at `entry_rate`: rate, mean_ms, p90_ms, cpu."""
    doc = dict(scenario, duration=hours * 3600.0)
    classes = doc["workload"]["classes"]
    total = sum(c["rate"] for c in classes)
    doc["workload"] = dict(
        doc["workload"],
        classes=[dict(c, rate=c["rate"] * entry_rate / total) for c in classes],
        noise=0.0,
    )
    doc["telemetry"] = {"mode": "ideal", "plot": False, "traces": False, "logs": False}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calibrated.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        run_scenario(load_scenario(path), Path(tmp) / "run", labels=False)
        _, services, metrics, cube = read_cube(Path(tmp) / "run")
    col = {m: i for i, m in enumerate(metrics)}
    out = {}
    for i, svc in enumerate(services):
        served = cube[:, i, col["throughput"]] + cube[:, i, col["error_rate"]]
        w = served / max(served.sum(), 1e-12)
        p50, p95, p99 = (cube[:, i, col[f"latency_p{p}_ms"]] for p in (50, 95, 99))
        mu, sigma, shift = np.moveaxis(dist_from_quantiles(p50, p95, p99), -1, 0)
        p90 = np.where(p50 > 0, shift + np.exp(mu + Z90 * sigma), 0.0)
        out[svc] = {
            "rate": float(cube[:, i, col["arrival_rate"]].mean()),
            "mean_ms": float((cube[:, i, col["latency_mean_ms"]] * w).sum()),
            "p90_ms": float((p90 * w).sum()),
            "cpu": float(cube[:, i, col["cpu_cores"]].mean()),
        }
    return out


def compare(real: dict, twin: dict, twin_cpu: dict | None = None) -> list[dict[str, Any]]:
    """One row per service seen in both: real, twin and relative error of each figure (CPU
    from `twin_cpu`, the run at the metrics' load, when given)."""
    rows = []
    for svc in sorted(set(real) & set(twin), key=lambda s: -real[s]["rate"]):
        row: dict[str, Any] = {"service": svc}
        for key in ("rate", "mean_ms", "p90_ms", "cpu"):
            source = twin_cpu if key == "cpu" and twin_cpu is not None else twin
            r, t = real[svc][key], source.get(svc, {}).get(key, np.nan)
            row[key] = (r, t, (t - r) / r if r and np.isfinite(r) else np.nan)
        rows.append(row)
    return rows


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many services above MIN_RATE meet each target, and the spread of the errors;
    `cpu_all`: the CPU target over every service (a pod's CPU is measured at any rate)."""
    busy = [r for r in rows if r["rate"][0] >= MIN_RATE]
    out: dict[str, Any] = {"services": len(busy)}
    for key, column, target, among in (
        ("mean_ms", "mean_ms", "mean", busy),
        ("p90_ms", "p90_ms", "p90", busy),
        ("cpu", "cpu", "cpu", busy),
        ("cpu_all", "cpu", "cpu", rows),
    ):
        errs = np.array([abs(r[column][2]) for r in among if np.isfinite(r[column][2])])
        out[key] = {
            "within": int((errs <= TARGETS[target]).sum()),
            "of": len(errs),
            "target": TARGETS[target],
            "median_abs_error": float(np.median(errs)) if len(errs) else None,
        }
    return out
