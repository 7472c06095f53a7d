"""The impact study's scenario suite: 16 families, each a seeded scenario generator.

A family is one situation an operations team meets; `build(family, seed)` turns it into a
validated `Scenario`. Nine families re-time a scenario of the library (its topology, patch,
workload classes, SLOs and fault parameters are read from the YAML; the clock is compressed
to 1.5-3 h, and black-friday's leak runs twice as fast to fit its shorter evening), seven
are generated here on Sock Shop, hotel reservation, social network and Train Ticket. Why:

- Every fault kind of the twin appears at least once (bad deploy, memory leak, crash,
  latency, errors, CPU hog, dependency outage, network partition, packet loss,
  misconfiguration, retry storm, and a metastable storm from a retry policy), on all five
  topologies, so MTTD/MTTI/MTTR are measured over the whole remedy table, including the
  kinds no single action ends (a latency fault, a crash loop, an outage: only mitigation).
- Overlapping faults (network-partition, train-ticket-cascade, black-friday,
  social-crash-latency, hotel-retry-storm, trainticket-deploy-errors) test correlation and
  the alert load of several incidents at once; load events (flash-crowd, black-friday's
  calendar sale and crowd, sockshop-sale-leak's declared campaign) test capacity and the
  stacks' reaction to traffic that is not a fault; steady-state is the fault-free control
  (any page there is noise, any replica added is cost).
- Targets of the generated families are drawn per seed among the services that carry at
  least a quarter of the system's entry traffic at base load (a fault elsewhere rarely
  touches an SLO and would measure nothing); magnitudes are drawn from ranges scaled by the
  target's own limits (as in `experiments.rca.cases`). Library families keep their story's
  targets and parameters; the seed shifts their faults together by up to ±10 minutes.
- Every fault starts at least ~30 minutes in (the RCA's normal history) and ends at least
  20 minutes before the run does, so recovery is observed rather than censored where the
  stacks can recover at all.

None of this was tuned to a verdict: families and ranges were fixed before the study's
figures existed, for coverage; the seed varies noise, timing, targets and magnitudes.
`time_scale` shrinks every duration and time alike (the quick run and the tests).

Over 500 lines because the 16 families are data-like generators best read side by side.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import yaml

from experiments.detection.suite import BASE_LOAD, ROOT
from experiments.rca.cases import callers, expected_rates
from twin.scenario.loader import apply_topology_patch, check_scenario
from twin.scenario.schema import Scenario

MIN = 60.0
HOUR = 3600.0
JITTER_S = 600.0  # library families: all faults shift together by up to this
BUSY_SHARE = 0.25  # a generated target carries at least this share of the entry traffic


@dataclass(frozen=True)
class Family:
    """One situation of the suite; `make(rng)` returns a raw scenario dict (loader format)."""

    name: str
    topology: str
    source: str  # "library:<file>" or "generated"
    covers: str  # what it exercises, for the summary
    make: Callable[[np.random.Generator], dict[str, Any]]


# ----------------------------------------------------------------------------- helpers
@cache
def _yaml(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def _library(name: str) -> dict[str, Any]:
    return copy.deepcopy(_yaml(f"scenarios/{name}.yaml"))


def _topology(name: str) -> dict[str, Any]:
    """A topology file's raw mapping (parsed once per process; callers get a copy)."""
    return copy.deepcopy(_yaml(f"scenarios/topologies/{name}.yaml"))


def _shift(rng: np.random.Generator) -> float:
    return float(rng.integers(-int(JITTER_S), int(JITTER_S) + 1))


def _retimed(raw: dict[str, Any], duration: float, times: list[tuple[float, float]], shift: float):
    """The library scenario with a new run length and its faults at new (start, duration)."""
    out = copy.deepcopy(raw)
    out["duration"] = duration
    faults = out.get("faults") or []
    if len(faults) != len(times):
        raise ValueError(f"{raw['name']}: {len(faults)} faults, {len(times)} timings")
    for fault, (start, length) in zip(faults, times, strict=True):
        fault["start"] = start + shift
        fault["duration"] = length
    return out


def busy_targets(topology: str, *, with_callees: bool = False) -> list[str]:
    """Non-entry services carrying at least BUSY_SHARE of the entry traffic (optionally only
    those that also send that much to one callee: a timeout misconfiguration needs calls)."""
    rates = expected_rates(topology)
    entries = BASE_LOAD[topology]
    floor = BUSY_SHARE * sum(entries.values())
    out = [s for s, r in rates.items() if r >= floor and s not in entries]
    if with_callees:
        out = [s for s in out if (c := busiest_callee(topology, s)) and c[1] >= floor]
    return sorted(out)


def busiest_callee(topology: str, service: str) -> tuple[str, float] | None:
    """The callee `service` sends the most calls per second at base load, and that rate."""
    rate = expected_rates(topology)[service]
    calls = [
        (c["to"], rate * float(c.get("per_request", 1.0)) * float(c.get("probability", 1.0)))
        for c in _yaml(f"scenarios/topologies/{topology}.yaml").get("calls", [])
        if c["from"] == service
    ]
    return max(calls, key=lambda c: (c[1], c[0])) if calls else None


def _pick(rng: np.random.Generator, items: list[str], avoid: tuple[str, ...] = ()) -> str:
    pool = [s for s in items if s not in avoid] or items
    return str(pool[int(rng.integers(len(pool)))])


def _service(topology: str, name: str) -> dict[str, Any]:
    return _yaml(f"scenarios/topologies/{topology}.yaml")["services"][name]


LATENCY_SLO_MS = 500.0
# Train Ticket's healthy p99 at its entry is 432 ms (ideal telemetry, base load, an hour;
# the other reference systems' are 15-66 ms), so 500 ms left it at the objective's edge:
# with production telemetry 9% of its 15 s steps read p99 above 500 ms with no fault, both
# stacks' SLO checks fired on that noise, and an incident opened before the fault absorbed
# the fault's alerts (14 of 64 AI rehearsals of the remediable suite on development seeds
# 100-103, 12 of them on Train Ticket). 1,000 ms gives it about the headroom an SLO is set
# with (2.3x its healthy p99); tests/test_suite_slos.py checks every system's healthy p99
# is at most half its objective.
LATENCY_SLO_MS_BY_TOPOLOGY = {"train-ticket": 1000.0}


def latency_slo_ms(topology: str) -> float:
    """The p99 latency objective of the topology's entry classes."""
    return LATENCY_SLO_MS_BY_TOPOLOGY.get(topology, LATENCY_SLO_MS)


def _generated(topology: str, name: str, duration: float, faults: list, **workload) -> dict:
    """A scenario at the topology's documented base load, one SLO per entry class."""
    classes = [
        {"name": f"{entry}-requests", "entry": entry, "rate": rate}
        for entry, rate in BASE_LOAD[topology].items()
    ]
    wl = {"classes": classes, "noise": 0.05, **workload}
    latency_ms = latency_slo_ms(topology)
    slos = [
        {"class": c["name"], "availability": 0.999, "latency_ms": latency_ms, "percentile": 99}
        for c in classes
    ]
    return {
        "name": name,
        "topology": topology,
        "duration": duration,
        "workload": wl,
        "faults": faults,
        "slos": slos,
    }


def _leak_rate(topology: str, target: str, rng: np.random.Generator) -> float:
    """MB/min that fills the target's headroom in 10-20 minutes: OOM kills while it lasts."""
    svc = _service(topology, target)
    room = float(svc.get("memory_limit_mb", 256.0)) - float(svc.get("memory_base_mb", 50.0))
    return round(max(room, 10.0) / float(rng.uniform(10.0, 20.0)), 2)


# ------------------------------------------------------------------ library families
def _bad_deploy(rng: np.random.Generator) -> dict:
    return _retimed(_library("bad-deploy"), 2 * HOUR, [(45 * MIN, 45 * MIN)], _shift(rng))


def _memory_leak(rng: np.random.Generator) -> dict:
    return _retimed(_library("memory-leak"), 2.5 * HOUR, [(40 * MIN, 80 * MIN)], _shift(rng))


def _dependency_outage(rng: np.random.Generator) -> dict:
    return _retimed(_library("dependency-outage"), 1.5 * HOUR, [(45 * MIN, 15 * MIN)], _shift(rng))


def _network_partition(rng: np.random.Generator) -> dict:
    times = [(40 * MIN, 20 * MIN), (85 * MIN, 30 * MIN)]
    return _retimed(_library("network-partition"), 2.5 * HOUR, times, _shift(rng))


def _retry_storm(rng: np.random.Generator) -> dict:
    return _retimed(_library("retry-storm"), 2 * HOUR, [(45 * MIN, 5 * MIN)], _shift(rng))


def _train_ticket_cascade(rng: np.random.Generator) -> dict:
    times = [(40 * MIN, 30 * MIN), (100 * MIN, 10 * MIN)]
    raw = _retimed(_library("train-ticket-cascade"), 2.5 * HOUR, times, _shift(rng))
    raw["workload"]["start_hour"] = 10.0  # the library's faults sit at the daily peak (11:00)
    return raw


def _black_friday(rng: np.random.Generator) -> dict:
    """The flagship compressed to 3 h from 16:00: the sale at 17:00 for 90 min, the crowd
    inside it, the four faults overlapping as in the library (leak twice as fast: it has
    half the time)."""
    times = [
        (70 * MIN, 40 * MIN),
        (40 * MIN, 110 * MIN),
        (35 * MIN, 20 * MIN),
        (125 * MIN, 20 * MIN),
    ]
    raw = _retimed(_library("black-friday"), 3 * HOUR, times, _shift(rng))
    wl = raw["workload"]
    wl["start_hour"] = 16.0
    wl["calendar"][0].update(start=60 * MIN, duration=90 * MIN)
    wl["flash_crowds"][0].update(start=80 * MIN + _shift(rng) / 2, duration=15 * MIN)
    raw["faults"][1]["mb_per_min"] = 3.0
    return raw


def _flash_crowd(rng: np.random.Generator) -> dict:
    raw = _library("flash-crowd")
    raw["duration"] = 2 * HOUR
    raw["workload"]["flash_crowds"][0].update(start=50 * MIN + _shift(rng), duration=40 * MIN)
    return raw


def _steady_state(rng: np.random.Generator) -> dict:
    raw = _library("steady-state")
    raw["duration"] = 1.5 * HOUR
    raw.pop("tick", None)
    raw["workload"]["start_hour"] = float(rng.integers(8, 21))
    return raw


# ---------------------------------------------------------------- generated families
def _sockshop_cpu_hog(rng: np.random.Generator) -> dict:
    topo = "sock-shop"
    target = _pick(rng, busy_targets(topo))
    cores = float(_service(topo, target).get("cpu_limit", 0.2)) * float(rng.uniform(0.85, 0.97))
    start = 40 * MIN + float(rng.integers(0, 20 * MIN))
    fault = {
        "kind": "cpu_hog",
        "target": target,
        "start": start,
        "duration": float(rng.integers(20 * MIN, 35 * MIN)),
        "cores": round(cores, 4),
    }
    return _generated(topo, "sockshop-cpu-hog", 2 * HOUR, [fault])


def _sockshop_sale_leak(rng: np.random.Generator) -> dict:
    """A declared campaign (lift 2 for an hour) while a busy service leaks memory."""
    topo = "sock-shop"
    target = _pick(rng, busy_targets(topo))
    sale_at = 60 * MIN
    leak = {
        "kind": "memory_leak",
        "target": target,
        "start": sale_at - 15 * MIN + float(rng.integers(0, 30 * MIN)),
        "duration": 60 * MIN,
        "mb_per_min": _leak_rate(topo, target, rng),
    }
    calendar = [
        {
            "name": "sock-sale",
            "kind": "campaign",
            "start": sale_at,
            "duration": 60 * MIN,
            "lift": 2.0,
            "ramp_s": 600,
        }
    ]
    return _generated(topo, "sockshop-sale-leak", 2.5 * HOUR, [leak], calendar=calendar)


def _hotel_misconfig(rng: np.random.Generator) -> dict:
    """A config push sets a busy service's outgoing call timeout below its callees' tail."""
    topo = "hotel-reservation"
    target = _pick(rng, busy_targets(topo, with_callees=True))
    callee = busiest_callee(topo, target)[0]
    typical_ms = float(_service(topo, callee)["service_time"]["mean_ms"])
    fault = {
        "kind": "misconfiguration",
        "target": target,
        "start": 40 * MIN + float(rng.integers(0, 20 * MIN)),
        "duration": 30 * MIN,
        "timeout_ms": round(typical_ms * float(rng.uniform(0.5, 1.0)), 3),
    }
    return _generated(topo, "hotel-misconfig", 2 * HOUR, [fault])


def _hotel_retry_storm(rng: np.random.Generator) -> dict:
    """A client release retries a busy service 5x without back-off while it fails a share of
    its requests: every failure comes back five more times."""
    topo = "hotel-reservation"
    target = _pick(rng, busy_targets(topo))
    start = 40 * MIN + float(rng.integers(0, 20 * MIN))
    faults = [
        {
            "kind": "retry_storm",
            "target": target,
            "start": start,
            "duration": 30 * MIN,
            "retries": 5,
        },
        {
            "kind": "errors",
            "target": target,
            "start": start + 5 * MIN,
            "duration": 10 * MIN,
            "rate": round(float(rng.uniform(0.2, 0.5)), 3),
        },
    ]
    return _generated(topo, "hotel-retry-storm", 2 * HOUR, faults)


def _social_crash_latency(rng: np.random.Generator) -> dict:
    """Pods of one busy service crash-loop while another slows down: two overlapping roots."""
    topo = "social-network"
    crash = _pick(rng, busy_targets(topo))
    slow = _pick(rng, busy_targets(topo), avoid=(crash,))
    start = 40 * MIN + float(rng.integers(0, 15 * MIN))
    faults = [
        {
            "kind": "crash",
            "target": crash,
            "start": start,
            "duration": 15 * MIN,
            "share": float(rng.choice([0.5, 1.0])),
        },
        {
            "kind": "latency",
            "target": slow,
            "start": start + 10 * MIN,
            "duration": 20 * MIN,
            "factor": round(float(rng.uniform(4.0, 10.0)), 2),
        },
    ]
    return _generated(topo, "social-crash-latency", 2 * HOUR, faults)


def _social_partition(rng: np.random.Generator) -> dict:
    """A network partition between a busy service and one of its busy callers."""
    topo = "social-network"
    rates = expected_rates(topo)
    floor = BUSY_SHARE * sum(BASE_LOAD[topo].values())
    links = sorted(
        (s, c) for s in busy_targets(topo) for c in callers(topo).get(s, ()) if rates[c] >= floor
    )
    target, peer = links[int(rng.integers(len(links)))]
    fault = {
        "kind": "network_partition",
        "target": target,
        "peer": peer,
        "start": 40 * MIN + float(rng.integers(0, 20 * MIN)),
        "duration": float(rng.integers(15 * MIN, 25 * MIN)),
    }
    return _generated(topo, "social-partition", 2 * HOUR, [fault])


def _trainticket_deploy_errors(rng: np.random.Generator) -> dict:
    """A regressed release of one busy service, then errors from another while it is live."""
    topo = "train-ticket"
    bad = _pick(rng, busy_targets(topo))
    failing = _pick(rng, busy_targets(topo), avoid=(bad,))
    start = 40 * MIN + float(rng.integers(0, 15 * MIN))
    faults = [
        {
            "kind": "bad_deploy",
            "target": bad,
            "start": start,
            "duration": 40 * MIN,
            "latency_factor": round(float(rng.uniform(2.0, 5.0)), 2),
            "error_rate": round(float(rng.uniform(0.02, 0.15)), 3),
            "cpu_factor": round(float(rng.uniform(1.0, 2.0)), 2),
            "version": "v2",
        },
        {
            "kind": "errors",
            "target": failing,
            "start": start + 20 * MIN,
            "duration": 20 * MIN,
            "rate": round(float(rng.uniform(0.2, 0.6)), 3),
        },
    ]
    return _generated(topo, "trainticket-deploy-errors", 2.5 * HOUR, faults)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "bad-deploy",
            "online-boutique",
            "library:bad-deploy",
            "rollback of a regression (a fix that ends the fault)",
            _bad_deploy,
        ),
        Family(
            "memory-leak",
            "online-boutique",
            "library:memory-leak",
            "OOM kills and CrashLoopBackOff; restarts only buy time",
            _memory_leak,
        ),
        Family(
            "dependency-outage",
            "online-boutique",
            "library:dependency-outage",
            "a store refusing connections; failover or breakers",
            _dependency_outage,
        ),
        Family(
            "network-partition",
            "online-boutique",
            "library:network-partition",
            "partition then packet loss on two links (sequential faults)",
            _network_partition,
        ),
        Family(
            "retry-storm",
            "online-boutique",
            "library:retry-storm",
            "a metastable storm that outlives its 5-minute trigger",
            _retry_storm,
        ),
        Family(
            "train-ticket-cascade",
            "train-ticket",
            "library:train-ticket-cascade",
            "a slow shared backend climbing 41 services, then a crash loop",
            _train_ticket_cascade,
        ),
        Family(
            "black-friday",
            "online-boutique",
            "library:black-friday",
            "a calendar sale and a flash crowd with four overlapping faults",
            _black_friday,
        ),
        Family(
            "flash-crowd",
            "online-boutique",
            "library:flash-crowd",
            "an unannounced 3x surge, no fault: capacity and noise",
            _flash_crowd,
        ),
        Family(
            "steady-state",
            "online-boutique",
            "library:steady-state",
            "fault-free control: every page is noise, every pod is cost",
            _steady_state,
        ),
        Family(
            "sockshop-cpu-hog",
            "sock-shop",
            "generated",
            "a noisy neighbour on a busy service; scale-out mitigates",
            _sockshop_cpu_hog,
        ),
        Family(
            "sockshop-sale-leak",
            "sock-shop",
            "generated",
            "a declared campaign overlapping a memory leak",
            _sockshop_sale_leak,
        ),
        Family(
            "hotel-misconfig",
            "hotel-reservation",
            "generated",
            "a timeout set below the callees' tail (misconfiguration)",
            _hotel_misconfig,
        ),
        Family(
            "hotel-retry-storm",
            "hotel-reservation",
            "generated",
            "a retry-storm fault while the same service throws errors",
            _hotel_retry_storm,
        ),
        Family(
            "social-crash-latency",
            "social-network",
            "generated",
            "a crash loop and a slowdown on two services, overlapping",
            _social_crash_latency,
        ),
        Family(
            "social-partition",
            "social-network",
            "generated",
            "a network partition between two busy services",
            _social_partition,
        ),
        Family(
            "trainticket-deploy-errors",
            "train-ticket",
            "generated",
            "a bad deploy and an error burst on two services, overlapping",
            _trainticket_deploy_errors,
        ),
    )
}


# ------------------------------------------------------------------------- building
def family_seed(family: str, seed: int) -> np.random.SeedSequence:
    """Independent of the suite's order: the family's name and the seed index."""
    return np.random.SeedSequence([zlib.crc32(family.encode()), seed])


def _scale_times(raw: dict[str, Any], k: float) -> None:
    """Multiply the run length and every time of faults and load events by `k`, in place."""
    raw["duration"] = float(raw["duration"]) * k
    for fault in raw.get("faults") or []:
        fault["start"] = float(fault["start"]) * k
        fault["duration"] = float(fault["duration"]) * k
    wl = raw["workload"]
    for event in (wl.get("flash_crowds") or []) + (wl.get("calendar") or []):
        for key in ("start", "duration", "ramp_s"):
            if key in event:
                event[key] = float(event[key]) * k


def _to_seconds(raw: dict[str, Any]) -> None:
    """The library writes durations as text ('45m'); scaling needs numbers."""
    from twin.scenario.durations import parse_duration

    def sec(v: Any) -> float:
        return float(parse_duration(v)) if isinstance(v, str) else float(v)

    raw["duration"] = sec(raw["duration"])
    for fault in raw.get("faults") or []:
        for key in ("start", "duration"):
            fault[key] = sec(fault[key])
    wl = raw["workload"]
    for event in (wl.get("flash_crowds") or []) + (wl.get("calendar") or []):
        for key in ("start", "duration", "ramp_s"):
            if key in event:
                event[key] = sec(event[key])


def build(family: str, seed: int, time_scale: float = 1.0) -> Scenario:
    """The family's scenario for seed index `seed`, validated as `load_scenario` would."""
    if family not in FAMILIES:
        raise KeyError(family)
    spec = FAMILIES[family]
    rng = np.random.default_rng(family_seed(family, seed))
    run_seed = int(rng.integers(0, 2**31 - 1))
    raw = spec.make(rng)
    _to_seconds(raw)
    if time_scale != 1.0:
        _scale_times(raw, time_scale)
    raw["name"] = family
    raw["seed"] = run_seed
    # the study reads summaries and operations, not traces, logs or plots: identical stack
    # figures (checked), half the wall time
    raw["telemetry"] = {"plot": False, "traces": False, "logs": False}
    topo = raw["topology"]
    if isinstance(topo, str):
        topo = _topology(topo)
    patch = raw.pop("topology_patch", None)
    if patch is not None:
        topo = apply_topology_patch(topo, patch, f"impact suite {family}")
    raw["topology"] = topo
    scenario = Scenario.model_validate(raw)
    check_scenario(scenario, f"impact suite {family} (seed {seed})")
    return scenario


def families(names: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The suite's family names (all, or the given ones in suite order)."""
    if names is None:
        return list(FAMILIES)
    return [n for n in FAMILIES if n in set(names)]
