"""Provision a topology for the day it is about to replay, as its owners would have.

A system that has run on a traffic pattern is sized for it: a service whose shipped replicas
cannot carry the day's peak gets an HPA (its shipped count as the floor: an operator adds
an autoscaler rather than paying for the peak all day, as the capacity study's topology
does for redis-cart and recommendationservice), and each HPA's ceiling lets it reach the
peak. The
no-fault day replays a recorded series rescaled to the topology's base rate, so its peaks
(Twitter volume bursts reach 5-10x the mean) would overload a topology sized for the mean;
that is a capacity incident, on which paging is right, not a day with no fault. The
shipped sizing stays available (`provision="as-shipped"`) to reproduce that case.

Sizing is the capacity model the predictive scaler uses (`replicas_for_rate`) on the expected
rates and worker holding times the topology generator sizes with
(`twin.scenario.generate.expected_load`: λ = external + Wᵀλ over the call graph's expected
calls; a worker is held for the service's own time plus its synchronous calls').
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agents.scaling.predictive import replicas_for_rate
from twin.scenario.generate import expected_load
from twin.scenario.schema import Replay
from twin.scenario.topology import Hpa, Topology
from twin.scenario.workload import load_replay

TARGET_UTILISATION = 0.7
"""Of the CPU limit and the worker pool at the day's peak (the HPA's own default target)."""

PEAK_WINDOW_S = 300.0
"""The peak is the highest 5-minute mean: a one-sample spike is absorbed by queues and the
HPA, and sizing for it would make every service idle all day."""


def replay_peak(series: Path, hours: float, load: float) -> float:
    """The replayed window's peak as a multiple of the base rate (the series is replayed
    normalised by its mean, times `load`)."""
    times, values, period = load_replay(Replay(file=str(series), time_column="timestamp"))
    horizon = min(hours * 3600.0, period)
    window = values[times < horizon]
    if window.size == 0:
        return float(load)
    step = float(np.median(np.diff(times))) if times.size > 1 else PEAK_WINDOW_S
    width = max(1, int(round(PEAK_WINDOW_S / step)))
    if window.size >= width:
        smoothed = np.convolve(window, np.ones(width) / width, mode="valid")
    else:
        smoothed = np.array([window.mean()])
    return float(max(1.0, smoothed.max())) * float(load)


def provision_for_peak(
    topology_raw: dict[str, Any], entry_rates: Mapping[str, float], peak: float
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """A copy of the raw topology sized for `peak` × the entry rates, and what changed.

    A service without an HPA that its shipped replicas cannot carry at the peak gets one
    (floor: the shipped count; ceiling: what the peak needs at the target utilisation); an
    HPA keeps its floor and target, and its ceiling rises to what the peak needs at its own
    CPU target. Returns (topology, {service: {field: new value}})."""
    topology = Topology.model_validate(topology_raw)
    classes = [{"entry": entry, "rate": rate * peak} for entry, rate in entry_rates.items()]
    names, rate_arr, hold_ms = expected_load(topology_raw, classes)
    rates = dict(zip(names, rate_arr.tolist(), strict=True))
    hold = {n: h / 1000.0 for n, h in zip(names, hold_ms.tolist(), strict=True)}
    raw = {**topology_raw, "services": {k: dict(v) for k, v in topology_raw["services"].items()}}
    changes: dict[str, dict[str, int]] = {}
    for name, svc in topology.services.items():
        need = replicas_for_rate(
            rates[name],
            cpu_per_request_ms=svc.cpu_per_request_ms,
            cpu_limit=svc.cpu_limit,
            workers=svc.workers,
            holding_s=hold[name],
            target=TARGET_UTILISATION,
        )
        entry = raw["services"][name]
        hpa = svc.hpa or Hpa(min_replicas=max(1, svc.replicas))
        per_replica = svc.cpu_request * hpa.target_cpu - svc.cpu_idle_cores
        by_hpa = (
            math.ceil(rates[name] * svc.cpu_per_request_ms / 1000.0 / per_replica - 1e-9)
            if per_replica > 0
            else need
        )
        ceiling = max(need, by_hpa)
        if svc.hpa is None and need > svc.replicas:
            entry["hpa"] = {"min_replicas": hpa.min_replicas, "max_replicas": ceiling}
            changes[name] = {"min_replicas": hpa.min_replicas, "max_replicas": ceiling}
        elif svc.hpa is not None and ceiling > svc.hpa.max_replicas:
            entry["hpa"] = {**dict(entry.get("hpa") or {}), "max_replicas": ceiling}
            changes[name] = {"max_replicas": ceiling}
    return raw, changes
