"""A runnable scenario from recorded traces: the imported topology with the client settings
and capacity the traces imply, and a workload at the observed entry rates.

Import-then-run is one step, so nothing may be left that `firebreak run` would reject or
that fails the observed traffic by construction:
- timeouts: when an edge's failed attempts pile up at one duration (three or more within 5%
  of the longest call), that duration is its timeout; otherwise the timeout is twice the
  longest call seen, rounded up to two significant digits, and only written when that is
  above the default (a trace with 38 s calls must not meet a 1 s timeout);
- retries: the most attempts one call took (`max`), the median wait between a failed
  attempt and the next (`backoff_ms`) and the median ratio of successive waits
  (`multiplier`); edges where no call was retried keep the default (none: traces cannot
  show a policy nothing triggered);
- capacity (never in traces): each service sized so the observed load uses half of it,
  workers by Little's law (rate × mean duration), CPU cores from the CPU per request,
  memory for a full pool and queue;
- workload: one request class per entry service at the rate its root spans arrived
  (divided by the traced share, `sampled`), or a given total rate split by root counts.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twin.errors import ScenarioError
from twin.scenario.import_traces import (
    Analysis,
    TraceImportError,
    analyse,
    chains,
    topology_from,
    validate_topology,
)
from twin.scenario.loader import check_scenario
from twin.scenario.schema import Scenario
from twin.scenario.topology import MAX_WORKERS, CallDefaults, Retries, Service
from twin.scenario.trace_files import read_spans

HEADROOM = 2.0  # capacity over the observed load
TIMEOUT_MARGIN = 2.0  # an unobserved timeout: this many times the longest call
CUT_SHARE = 0.95  # failed attempts this close to the longest call were cut by a timeout
MIN_CUT = 3  # failed attempts at one duration before it is read as a timeout
FALLBACK_RATE = 1.0  # requests/s per entry when the traces cannot show a rate
SLO_MARGIN = 1.5  # an imported SLO's latency over the observed p99 (a sample's p99 is rough)
_MAX_RETRIES = next(m.le for m in Retries.model_fields["max"].metadata if hasattr(m, "le"))


def _nice_ceil(value: float) -> float:
    """Rounded up to two significant digits (76,012 → 77,000)."""
    if value <= 0:
        return value
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(value / scale - 1e-9) * scale


def _edge_attempts(a: Analysis) -> dict[tuple[str, str], list[list]]:
    """Per edge (caller, callee): its call chains (attempt 1 and its retries)."""
    owner_service = {
        (r.trace, r.span_id): service for service, reqs in a.requests.items() for r in reqs
    }
    out: dict[tuple[str, str], list[list]] = defaultdict(list)
    for owner, made in a.calls.items():
        caller = owner_service.get(owner)
        if caller is None:
            continue
        for chain in chains(made):
            out[(caller, chain[0].target)].append(chain)
    return out


def _timeout_ms(attempts: list) -> tuple[float | None, bool]:
    """(timeout in ms or None for the default, whether it was observed as a cut)."""
    durations = [(c.end - c.start) / 1000.0 for c in attempts]
    longest = max(durations)
    cut = [d for c, d in zip(attempts, durations, strict=True) if c.error]
    cut = [d for d in cut if d >= CUT_SHARE * longest]
    if len(cut) >= MIN_CUT and longest > 0:
        return round(statistics.median(cut), 3), True
    need = _nice_ceil(TIMEOUT_MARGIN * longest)
    default = CallDefaults().timeout_ms
    return (need if need > default else None), False


def _retries(chain_list: list[list]) -> dict[str, Any] | None:
    """The retry policy the retried calls show, or None when none was retried."""
    longest = max(max(c.attempt or 1 for c in ch) for ch in chain_list)
    if longest <= 1:
        return None
    first_gaps, ratios = [], []
    for ch in chain_list:
        gaps = [max(b.start - a.end, 0.0) / 1000.0 for a, b in itertools.pairwise(ch)]
        if gaps:
            first_gaps.append(gaps[0])
        ratios += [g2 / g1 for g1, g2 in itertools.pairwise(gaps) if g1 > 0]
    policy: dict[str, Any] = {"max": min(longest - 1, _MAX_RETRIES)}
    if first_gaps:
        policy["backoff_ms"] = round(statistics.median(first_gaps), 3)
    if ratios:
        policy["multiplier"] = round(max(1.0, statistics.median(ratios)), 3)
    return policy


def client_settings(a: Analysis, calls: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Write each edge's timeout and retries into `calls`; returns what was observed."""
    attempts = _edge_attempts(a)
    notes: dict[str, list[str]] = {"timeouts observed": [], "timeouts widened": [], "retries": []}
    for edge in calls:
        key = (edge["from"], edge["to"])
        chain_list = attempts.get(key)
        if not chain_list:
            continue
        timeout, observed = _timeout_ms([c for ch in chain_list for c in ch])
        if timeout is not None:
            edge["timeout_ms"] = timeout
            kind = "timeouts observed" if observed else "timeouts widened"
            notes[kind].append(f"{key[0]}->{key[1]} {timeout:g} ms")
        policy = _retries(chain_list)
        if policy is not None:
            edge["retries"] = policy
            notes["retries"].append(f"{key[0]}->{key[1]} max {policy['max']}")
    return notes


def entry_rates(a: Analysis, *, rate: float | None, sampled: float) -> tuple[dict[str, float], str]:
    """Requests/s per entry service and how the figure was found."""
    total_roots = sum(a.roots.values())
    starts = [s.start for s in a.root_spans]
    span_s = (max(starts) - min(starts)) / 1e6 if starts else 0.0
    if rate is not None:
        total, how = rate, f"given (--rate {rate:g}/s)"
    elif total_roots >= 2 and span_s > 0:
        total = (total_roots - 1) / span_s / sampled
        how = f"observed: {total_roots} root spans over {span_s:.6g} s, traced share {sampled:g}"
    else:
        total = FALLBACK_RATE * max(len(a.roots), 1)
        how = f"assumed {FALLBACK_RATE:g}/s per entry (one instant of traces; pass --rate)"
    return {s: total * n / total_roots for s, n in a.roots.items()}, how


def _service_rates(a: Analysis, rates: Mapping[str, float]) -> dict[str, float]:
    """Requests/s each service sees: its requests per trace times the traces' rate."""
    per_trace = sum(rates.values()) / max(a.traces, 1)
    counts = {s: len(r) for s, r in a.requests.items()}
    counts.update({s: len(c) for s, c in a.peer_only.items() if s not in counts})
    return {s: n * per_trace for s, n in counts.items()}


def size_capacity(a: Analysis, services: dict[str, dict], rates: Mapping[str, float]) -> None:
    """Workers, CPU and memory per replica so the observed load uses 1/HEADROOM of them."""
    lam = _service_rates(a, rates)
    base = Service(service_time={"mean_ms": 1.0})
    for name, entry in services.items():
        spans = a.requests.get(name) or a.peer_only.get(name) or []
        residence = statistics.fmean((s.end - s.start) / 1e6 for s in spans) if spans else 0.0
        load = lam.get(name, 0.0)
        workers = math.ceil(HEADROOM * load * residence) + 1
        if workers > base.workers:
            entry["workers"] = min(workers, MAX_WORKERS)
        cpu_ms = min(base.cpu_per_request_ms, entry["service_time"]["mean_ms"])
        entry["cpu_per_request_ms"] = round(cpu_ms, 4)
        cores = HEADROOM * load * cpu_ms / 1000.0
        if cores > base.cpu_request:
            entry["cpu_request"] = round(_nice_ceil(cores), 3)
            entry["cpu_limit"] = round(_nice_ceil(HEADROOM * cores), 3)
        pool = entry.get("workers", base.workers) + base.queue_limit
        memory = HEADROOM * (base.memory_base_mb + base.memory_per_request_mb * pool)
        if memory > base.memory_limit_mb:
            entry["memory_limit_mb"] = _nice_ceil(memory)


def slos(a: Analysis) -> list[dict[str, Any]]:
    """One latency objective per entry at SLO_MARGIN × its observed p99 (rounded up), so the
    traffic the traces show meets it: a reference line, not a declared objective."""
    out = []
    for entry in sorted(a.roots):
        durations = sorted((s.end - s.start) / 1000.0 for s in a.root_spans if s.service == entry)
        p99 = durations[min(len(durations) - 1, math.ceil(0.99 * len(durations)) - 1)]
        if p99 > 0:
            out.append(
                {"class": entry, "latency_ms": _nice_ceil(SLO_MARGIN * p99), "percentile": 99}
            )
    return out


def import_scenario(
    path: str | Path,
    *,
    name: str | None = None,
    duration: float = 3600.0,
    rate: float | None = None,
    sampled: float = 1.0,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A validated, runnable scenario (plain data) from a trace file, and a summary."""
    path = Path(path)
    fmt, spans = read_spans(path)
    scenario, summary = scenario_from_spans(
        spans, path, name=name or path.stem, duration=duration, rate=rate, sampled=sampled,
        seed=seed,
    )  # fmt: skip
    summary["format"] = fmt
    return scenario, summary


def scenario_from_spans(
    spans: list,
    source: Path,
    *,
    name: str,
    duration: float = 3600.0,
    rate: float | None = None,
    sampled: float = 1.0,
    seed: int = 0,
    adjust: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scenario of a list of spans (see `import_scenario`); `adjust(analysis, topology)`
    may refine the topology (calibration from metrics) before it is validated."""
    a = analyse(spans)
    if not a.roots:
        raise TraceImportError(f"{source}: no root spans (every span has a parent): no entry")
    topology, summary = topology_from(a, name, len(spans))
    summary["format"] = "spans"
    summary["settings"] = client_settings(a, topology["calls"])
    rates, how = entry_rates(a, rate=rate, sampled=sampled)
    size_capacity(a, topology["services"], rates)
    if adjust is not None:
        adjust(a, topology)
    validate_topology(topology, str(source))
    summary["rate"], summary["rate_source"] = sum(rates.values()), how
    scenario = {
        "name": name,
        "description": f"Imported from {source.name}: {len(topology['services'])} services, "
        f"{len(topology['calls'])} calls.",
        "duration": duration,
        "seed": seed,
        "topology": topology,
        "workload": {
            "classes": [
                {"name": svc, "entry": svc, "rate": round(r, 6)} for svc, r in sorted(rates.items())
            ]
        },
        "slos": slos(a),
    }
    try:
        check_scenario(Scenario.model_validate(scenario), str(source))
    except (ScenarioError, ValueError) as exc:  # a bug here, not the user's: say what
        raise TraceImportError(f"{source}: the imported scenario is invalid: {exc}") from None
    return scenario, summary


def scenario_header(path: Path, summary: Mapping[str, Any]) -> str:
    """The comment block: where the scenario came from, what was observed, sized, assumed."""
    entries = ", ".join(f"{svc} ({count} traces)" for svc, count in summary["entries"].items())
    lines = [
        f"Imported by `firebreak import-traces` from {path.name} ({summary['format']}):",
        f"{summary['traces']} traces, {summary['spans']} spans.",
        f"Entry services (where traces start): {entries}.",
        f"Entry rate {summary['rate']:.6g}/s, {summary['rate_source']}.",
        "Observed: services, calls, calls per request, async calls, own service time (mean,",
        "cv), parallel fan-out, own error rate, timeouts and retries where calls show them.",
    ]
    for kind, items in summary["settings"].items():
        if items:
            lines.append(f"{kind.capitalize()}: {', '.join(items)}.")
    lines += [
        "Sized, not observed: workers, CPU and memory, so the observed load uses half of",
        "them. SLOs: 1.5 x each entry's observed p99 (a reference line, not an objective).",
        "Left at the defaults: replicas, queue limits, breakers, HPA.",
    ]
    return "".join(f"# {line}\n" for line in lines)
