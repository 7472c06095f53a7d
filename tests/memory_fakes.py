"""Synthetic incidents for the incident-memory tests: a wide table, spans and logs of a
small call chain (front → a → b) with one fault of a chosen kind on `a` or `b`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.rca.base import IncidentTelemetry

SERVICES = ("front", "a", "b")
AT = 6000.0  # anomaly time, seconds
KINDS = ("cpu", "delay", "error_log")


def table(kind: str, target: str, rng: np.random.Generator) -> pd.DataFrame:
    """60 s rows from 0 to 2 h; the fault moves the target's CPU (cpu) from AT on."""
    time = np.arange(0.0, 7200.0, 60.0)
    cols: dict[str, np.ndarray] = {"time": time}
    after = time >= AT
    for s in SERVICES:
        cpu = 100 + rng.normal(0, 3, time.size)
        if kind == "cpu" and s == target:
            cpu = np.where(after, cpu + rng.uniform(300, 600), cpu)
        cols[f"{s}_CpuUsage(m)"] = cpu
        cols[f"{s}_MemoryUsage(Mi)"] = 500 + rng.normal(0, 5, time.size)
        cols[f"{s}_PodWorkload(Ops)"] = 20 + rng.normal(0, 1, time.size)
    return pd.DataFrame(cols)


def spans_and_logs(
    kind: str, target: str, rng: np.random.Generator, start: float, n: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n traces front → a → b from `start`, one a second; after AT the fault shows."""
    rows, logs = [], []
    for i in range(n):
        t0 = start + i
        faulty = t0 >= AT
        trace = f"{int(t0 * 10):x}"
        chain = [("front", "", "GET /"), ("a", "front", "A.call"), ("b", "a", "B.call")]
        begin, parent = t0, ""
        for j, (svc, _caller, op) in enumerate(chain):
            span = f"{trace}{j}"
            base_ms = 5.0 + rng.normal(0, 0.3)
            if faulty and kind == "delay" and svc == target:
                base_ms += 80.0
            dur = base_ms * (3 - j)
            rows.append((trace, span, parent, svc, f"{svc}-0-x", op, begin, begin + dur / 1e3, dur))
            level_line = ("INFO", f"INFO {svc}.Impl#10")
            if faulty and kind == "error_log" and svc == target:
                level_line = ("ERROR", f"ERROR {svc}.Impl#99")
            logs.append((begin, f"{svc}-0-x", svc, trace, span, *level_line))
            parent, begin = span, begin + 0.0005
    spans = pd.DataFrame(
        rows, columns=["trace", "span", "parent", "service", "pod", "op", "start", "end", "dur_ms"]
    )
    spans["kind"], spans["error"], spans["peer"] = "", False, ""
    logs_frame = pd.DataFrame(
        logs, columns=["time", "pod", "service", "trace", "span", "level", "template"]
    )
    return spans, logs_frame


def incident(kind: str, target: str, seed: int) -> tuple[pd.DataFrame, IncidentTelemetry]:
    """A whole synthetic incident: table and telemetry (normal spans/logs recorded apart)."""
    rng = np.random.default_rng(seed)
    spans, logs = spans_and_logs(kind, target, rng, AT - 120.0, 300)
    normal_spans, normal_logs = spans_and_logs("none", target, rng, 1000.0, 200)
    tel = IncidentTelemetry(
        spans=spans, logs=logs, normal_spans=normal_spans, normal_logs=normal_logs
    )
    return table(kind, target, rng), tel
