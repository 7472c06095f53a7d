"""A calibrated scenario against a held-out period of the real system: per service, the
request rate, mean and p90 latency of its requests (its spans whose parent is elsewhere)
and its CPU, real beside simulated.

The twin is run (flow fidelity, ideal telemetry) at the held-out period's entry rate, so
the comparison is of the model, not of the load; latency statistics weight each tick by
the requests it served, and p90 comes from each tick's shifted lognormal.

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

from experiments.calibration.fit import pod_metrics, read_spans_dir
from twin.run.runner import run_scenario
from twin.scenario.import_traces import analyse
from twin.scenario.loader import load_scenario
from twin.telemetry.exposition import dist_from_quantiles
from twin.telemetry.widecsv import read_cube

Z90 = 1.2815515655446004
MIN_RATE = 1.0  # requests/s: the services the acceptance figures are about
TARGETS = {"mean": 0.15, "p90": 0.25, "cpu": 0.20}


def observed(root: Path) -> tuple[dict[str, dict[str, float]], float]:
    """Per service: rate, mean_ms, p90_ms, cpu (cores); and the entry rate."""
    a = analyse(read_spans_dir(root))
    starts = [s.start for s in a.root_spans]
    span_s = max((max(starts) - min(starts)) / 1e6, 1e-9)
    pods = pod_metrics(root).groupby(["service", "pod"])
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
    return out, (len(starts) - 1) / span_s


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
    """How many services above MIN_RATE meet each target, and the spread of the errors."""
    busy = [r for r in rows if r["rate"][0] >= MIN_RATE]
    out: dict[str, Any] = {"services": len(busy)}
    for key, target in (("mean_ms", "mean"), ("p90_ms", "p90"), ("cpu", "cpu")):
        errs = np.array([abs(r[key][2]) for r in busy if np.isfinite(r[key][2])])
        out[key] = {
            "within": int((errs <= TARGETS[target]).sum()),
            "of": len(errs),
            "target": TARGETS[target],
            "median_abs_error": float(np.median(errs)) if len(errs) else None,
        }
    return out
