"""An incident's signature: the families of symptoms its top cause shows.

Runbook rules and success statistics key on it, so it must say what kind of trouble this
is without naming the service ("memory", "latency+errors"): what an engineer means by
"looks like a leak" or "looks like a bad deploy". It is read from alerts only.
"""

from __future__ import annotations

from collections.abc import Iterable

from agents.contracts import SYMPTOMS
from detectors.base import Alert

FAMILY_OF_SIGNAL = {
    "latency_p99_ms": "latency",
    "latency_p95_ms": "latency",
    "latency_p50_ms": "latency",
    "latency_mean_ms": "latency",
    "error_ratio": "errors",
    "error_rate": "errors",
    "shed_rate": "saturation",
    "cpu_utilization": "saturation",
    "worker_utilization": "saturation",
    "queue": "saturation",
    "in_flight": "saturation",
    "memory_mb": "memory",
    "ready_replicas": "availability",
    "arrival_rate": "traffic",
}


def family(signal: str) -> str | None:
    """The symptom family of an alert's signal (log and trace detectors by prefix)."""
    if signal in FAMILY_OF_SIGNAL:
        return FAMILY_OF_SIGNAL[signal]
    if signal.startswith(("log", "template")):
        return "logs"
    if signal.startswith("edge_"):
        return "errors" if "error" in signal else "latency"
    return None


def signature_of(alerts: Iterable[Alert], service: str | None) -> str:
    """Families seen on `service` (all alerts' if it has none), in SYMPTOMS order, '+'-joined;
    "unknown" when no alert maps to a family."""
    alerts = list(alerts)
    mine = [a for a in alerts if a.service == service] if service else []
    seen = {family(a.signal) for a in (mine or alerts)} - {None}
    return "+".join(s for s in SYMPTOMS if s in seen) or "unknown"
