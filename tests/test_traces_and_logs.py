"""Sampled traces (OTLP JSON), template logs (JSONL) and importing traces into a topology.

Statistical checks take their tolerance from the sample (standard errors, Poisson counts);
a small stated slack is added only where the flow model itself approximates.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest
from conftest import SCENARIOS, chain_topology, make_scenario, topology_dict

from firebreak.cli import main
from twin.fields import M
from twin.flow.engine import Simulation
from twin.scenario.import_traces import TraceImportError, import_traces, read_spans
from twin.scenario.loader import load_scenario, load_topology
from twin.scenario.schema import Scenario
from twin.telemetry.logs import LogSink, iso_time
from twin.telemetry.otlp import OtlpTraceWriter
from twin.telemetry.spans import EPOCH_UNIX_S, Span
from twin.telemetry.trace_sampler import TraceSampler

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
EVENT_TEMPLATES = ("pod.", "deploy.", "breaker.")


# -- running a scenario with the trace and log sinks -----------------------------------------------
@dataclass
class Run:
    scenario: Scenario
    out: Path
    names: tuple[str, ...]
    times: np.ndarray
    values: np.ndarray
    events: list[dict]
    spans: list[Span] = field(default_factory=list)

    def logs(self) -> list[dict[str, Any]]:
        path = self.out / "logs.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def traces(self) -> dict[str, Any]:
        return json.loads((self.out / "traces.json").read_text())

    def metric(self, service: str, metric: str) -> np.ndarray:
        return self.values[:, self.names.index(service), M[metric]]


class _Collect:
    def __init__(self) -> None:
        self.chunks: list = []
        self.spans: list[Span] = []

    def on_chunk(self, chunk) -> None:
        self.chunks.append(chunk)

    def on_spans(self, spans) -> None:
        self.spans.extend(spans)

    def close(self) -> None:
        pass


def run_with(
    scenario: Scenario,
    out: Path,
    *,
    rate: float = 0.0,
    seed: int = 7,
    logs: bool = True,
    **log_options: Any,
) -> Run:
    """Simulate with a trace sampler (writing traces.json) and a log sink (logs.jsonl)."""
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulation(scenario)
    names, edges = sim.topo.names, sim.topo.edges
    keep = _Collect()
    listeners: list = [keep]
    sinks: list = [keep]
    if logs:
        log_sink = LogSink(out / "logs.jsonl", scenario, names, edges, seed=seed, **log_options)
        listeners.append(log_sink)
        sinks.append(log_sink)
    if rate > 0:
        writer = OtlpTraceWriter(out / "traces.json", names)
        sampler = TraceSampler(
            scenario, names, edges, rate=rate, seed=seed, writer=writer, listeners=listeners
        )
        sinks.insert(1, sampler)  # before the log sink: its spans come first, logs cope
    sim.sinks.extend(sinks)
    sim.run()
    return Run(
        scenario=scenario,
        out=out,
        names=names,
        times=np.concatenate([c.times for c in keep.chunks]),
        values=np.concatenate([c.values for c in keep.chunks]),
        events=[e for c in keep.chunks for e in c.events],
        spans=keep.spans,
    )


@pytest.fixture(scope="module")
def steady(tmp_path_factory) -> Run:
    """An hour of Online Boutique, one request in 200 traced."""
    scenario = load_scenario(SCENARIOS / "steady-state.yaml", duration=3600)
    return run_with(scenario, tmp_path_factory.mktemp("steady"), rate=0.005)


@pytest.fixture(scope="module")
def outage(tmp_path_factory) -> Run:
    """redis-cart refuses connections from 45 to 60 min."""
    scenario = load_scenario(SCENARIOS / "dependency-outage.yaml", duration=3600)
    return run_with(scenario, tmp_path_factory.mktemp("outage"), rate=0.003)


def _otlp_spans(doc: dict) -> list[dict]:
    out = []
    for rs in doc["resourceSpans"]:
        attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
        service = attrs["service.name"]["stringValue"]
        for scope in rs["scopeSpans"]:
            for span in scope["spans"]:
                out.append({**span, "service": service})
    return out


def _attr(span: dict, key: str) -> Any:
    for item in span["attributes"]:
        if item["key"] == key:
            return next(iter(item["value"].values()))
    return None


# -- OTLP structure ----------------------------------------------------------------------
def test_otlp_document_is_well_formed(steady: Run) -> None:
    doc = steady.traces()
    spans = _otlp_spans(doc)
    assert len(spans) == len(steady.spans) > 1000
    services = [
        rs["resource"]["attributes"][0]["value"]["stringValue"] for rs in doc["resourceSpans"]
    ]
    assert len(services) == len(set(services)), "one resourceSpans entry per service"
    by_id = {(s["traceId"], s["spanId"]): s for s in spans}
    assert len(by_id) == len(spans), "span ids are unique within a trace"
    roots = Counter()
    for s in spans:
        assert HEX32.match(s["traceId"]) and HEX16.match(s["spanId"])
        assert s["kind"] in (2, 3)
        start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
        assert EPOCH_UNIX_S * 10**9 <= start <= end
        if not s["parentSpanId"]:
            roots[s["traceId"]] += 1
            assert s["kind"] == 2, "a trace starts with the entry service's SERVER span"
            continue
        assert HEX16.match(s["parentSpanId"])
        parent = by_id[(s["traceId"], s["parentSpanId"])]  # the parent is in the same trace
        if s["kind"] == 3:
            assert parent["kind"] == 2 and parent["service"] == s["service"]
        else:
            assert parent["kind"] == 3 and parent["service"] != s["service"]
            assert _attr(parent, "peer.service") == s["service"]
        synchronous = not _attr(s, "rpc.async") and not _attr(parent, "rpc.async")
        timed_out = _attr(parent, "error.type") == "timeout"
        if synchronous and not timed_out:  # children lie inside their parents
            assert int(parent["startTimeUnixNano"]) <= start
            assert end <= int(parent["endTimeUnixNano"])
        if s.get("status", {}).get("code") == 2:
            assert _attr(s, "error.type")
    assert set(roots.values()) == {1}
    assert len(roots) == len({s["traceId"] for s in spans})


def test_sequential_calls_sum_inside_the_server_span(steady: Run) -> None:
    """Online Boutique calls one after another: a request's client spans never overlap."""
    calls = defaultdict(list)
    for s in steady.spans:
        if s.kind == "client" and not s.attributes.get("rpc.async"):
            calls[s.parent_id].append((s.start, s.end))
    servers = {s.span_id: s for s in steady.spans if s.kind == "server"}
    checked = 0
    for parent, intervals in calls.items():
        intervals.sort()
        assert all(b[0] >= a[1] - 1e-12 for a, b in itertools.pairwise(intervals))
        assert servers[parent].duration >= sum(b - a for a, b in intervals) - 1e-9
        checked += len(intervals) > 1
    assert checked > 100


def test_number_of_traces_follows_the_rate(steady: Run) -> None:
    entry = steady.names.index("frontend")
    finished = steady.values[:, entry, [M["throughput"], M["error_rate"], M["shed_rate"]]]
    expected = 0.005 * finished.sum() * steady.scenario.tick
    roots = sum(s.parent_id is None for s in steady.spans)
    assert abs(roots - expected) < 4 * math.sqrt(expected)


def test_writer_without_spans_writes_an_empty_request(tmp_path: Path) -> None:
    writer = OtlpTraceWriter(tmp_path / "traces.json", ["a", "b"])
    writer.add([])
    writer.close()
    assert json.loads((tmp_path / "traces.json").read_text()) == {"resourceSpans": []}
    assert [p.name for p in tmp_path.iterdir()] == ["traces.json"], "temporary files removed"


def test_writer_accepts_spans_from_any_source(tmp_path: Path) -> None:
    """The request fidelity feeds its own spans: services outside the list, several batches."""
    writer = OtlpTraceWriter(tmp_path / "traces.json", ["a"])
    root = Span("1" * 32, "2" * 16, None, "a", "GET /", "server", 0.5, 0.75)
    child = Span("1" * 32, "3" * 16, "2" * 16, "a", "b.call", "client", 0.5, 0.6, True,
                 {"error.type": "timeout", "retries": 2, "ratio": 0.5, "ok": False})  # fmt: skip
    writer.add([root])
    writer.add([child, Span("1" * 32, "4" * 16, "3" * 16, "b", "b", "server", 0.5, 0.7)])
    writer.close()
    spans = _otlp_spans(json.loads((tmp_path / "traces.json").read_text()))
    assert [s["service"] for s in spans] == ["a", "a", "b"]
    assert spans[0]["startTimeUnixNano"] == str(EPOCH_UNIX_S * 10**9 + 500_000_000)
    assert spans[1]["status"] == {"code": 2, "message": "timeout"}
    assert {a["key"]: a["value"] for a in spans[1]["attributes"]} == {
        "error.type": {"stringValue": "timeout"},
        "retries": {"intValue": "2"},
        "ratio": {"doubleValue": 0.5},
        "ok": {"boolValue": False},
    }


def test_writer_samples_whole_traces_and_caps_its_size(tmp_path: Path) -> None:
    spans = [
        Span(f"{i:016x}{7:016x}", f"{j + 1:016x}", None if j == 0 else "0" * 15 + "1", "a", "op",
             "server", 0.0, 1.0)
        for i in range(0, 2**64, 2**58) for j in range(3)
    ]  # fmt: skip
    half = OtlpTraceWriter(tmp_path / "half.json", ["a"], trace_ratio=0.5)
    half.add(spans)
    half.close()
    kept = _otlp_spans(json.loads((tmp_path / "half.json").read_text()))
    assert len(kept) + half.dropped == len(spans) and 0 < len(kept) < len(spans)
    assert all(int(s["traceId"][:16], 16) < 2**63 for s in kept)
    assert Counter(s["traceId"] for s in kept).keys() == {s["traceId"] for s in kept}
    assert set(Counter(s["traceId"] for s in kept).values()) == {3}, "whole traces"
    capped = OtlpTraceWriter(tmp_path / "capped.json", ["a"], max_spans=10)
    capped.add(spans[:6])
    capped.add(spans[6:])
    capped.close()
    assert capped.count == 9 and capped.dropped == len(spans) - 9


def test_request_fidelity_spans_feed_the_writer_logs_and_importer(tmp_path: Path) -> None:
    """No sampler: the request fidelity hands its own spans to the writer and the log sink."""
    from twin.request.engine import RequestSimulation

    topology = chain_topology()
    topology["calls"].append({"from": "mid", "to": "other", "sync": False, "required": False})
    workload = {"classes": [{"name": "all", "entry": "entry", "rate": 20}], "noise": 0.05}
    scenario = make_scenario(topology, duration=300, workload=workload)
    sim = RequestSimulation(scenario, trace_rate=0.5)
    writer = OtlpTraceWriter(tmp_path / "traces.json", sim.names)
    logs = LogSink(tmp_path / "logs.jsonl", scenario, sim.names, sim.topo.edges, seed=1,
                   info_rate=0.01)  # fmt: skip
    sim.span_sinks.extend([writer.add, logs.on_spans])
    sim.sinks.append(logs)
    sim.run()
    writer.close()
    imported, _ = import_traces(tmp_path / "traces.json")
    calls = {(c["from"], c["to"]): c for c in imported["calls"]}
    assert set(calls) == {(c["from"], c["to"]) for c in topology["calls"]}
    assert all(c["per_request"] == 1.0 and c["probability"] == 1.0 for c in calls.values())
    assert calls[("mid", "other")]["sync"] is False
    records = [json.loads(line) for line in (tmp_path / "logs.jsonl").read_text().splitlines()]
    assert records and all(HEX32.match(r["trace_id"]) for r in records)
    assert sum("span_id" in r for r in records) > len(records) / 2


# -- determinism ----------------------------------------------------------------------
def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "dependency-outage.yaml", duration=3600)
    scenario = scenario.model_copy(update={"duration": 900.0, "faults": []})
    outputs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run_with(scenario, tmp_path / name, rate=0.01, seed=seed, info_rate=0.01)
        files = ("traces.json", "logs.jsonl")
        outputs.append(tuple((tmp_path / name / f).read_bytes() for f in files))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] != outputs[2][0] and outputs[0][1] != outputs[2][1]


# -- consistency with the telemetry ------------------------------------------------------------
@pytest.mark.parametrize("service", ["frontend", "cartservice"])
def test_span_durations_match_the_tick_latency(steady: Run, service: str) -> None:
    """Server-span durations average the tick's mean latency (paired by tick).

    Tolerance: 4 standard errors of the paired differences, plus 3% for what the flow model
    approximates (calls cut at their timeout, fractional call counts drawn as integers).
    """
    latency = steady.metric(service, "latency_mean_ms") / 1000.0
    spans = [s for s in steady.spans if s.service == service and s.kind == "server"]
    diffs = np.array([s.duration - latency[int(s.start // steady.scenario.tick)] for s in spans])
    expected = np.mean([latency[int(s.start // steady.scenario.tick)] for s in spans])
    assert len(diffs) > 200
    tolerance = 4 * diffs.std(ddof=1) / math.sqrt(len(diffs)) + 0.03 * expected
    assert abs(diffs.mean()) < tolerance


def test_errors_in_traces_and_logs_follow_the_fault(outage: Run) -> None:
    start, end = 2700.0, 3600.0
    roots = [s for s in outage.spans if s.parent_id is None]
    before = [s.error for s in roots if s.start < start]
    during = [s.error for s in roots if start + 5 <= s.start < end]
    assert len(before) > 100 and len(during) > 50
    # the frontend fails every request while the cart's store is down (telemetry agrees)
    error_ratio = outage.metric("frontend", "error_ratio")[int(start) + 5 : int(end)].mean()
    assert np.mean(during) > error_ratio - 4 * math.sqrt(0.25 / len(during))
    assert np.mean(before) <= 4 * math.sqrt(1.0 / len(before))
    refused = [
        s
        for s in outage.spans
        if s.attributes.get("error.type") == "connection_refused"
        and s.attributes.get("peer.service") == "redis-cart"
    ]
    assert refused and all(start <= s.start < end for s in refused)
    assert not any(s.service == "redis-cart" and start <= s.start < end for s in outage.spans)

    logs = outage.logs()
    errors_before = [r for r in logs if r["level"] == "ERROR" and r["t"] < start]
    errors_during = [r for r in logs if r["level"] == "ERROR" and start <= r["t"] < end]
    rate_before = len(errors_before) / start
    rate_during = len(errors_during) / (end - start)
    assert rate_during > 1.0 and rate_before < 0.01 * rate_during
    refused_logs = [r for r in errors_during if "connection refused" in r["message"]]
    assert refused_logs and {r["service"] for r in refused_logs} == {"cartservice"}
    assert all("redis-cart" in r["message"] for r in refused_logs)


def test_timeouts_and_retries_in_a_partition(tmp_path: Path) -> None:
    """Every attempt across a partition ends at its timeout with error.type=timeout; the retry
    starts after the back-off; the callee never sees the request."""
    patch = {"calls": [{"from": "mid", "to": "leaf", "retries": {"max": 1, "backoff_ms": 50}}]}
    fault = {"kind": "network_partition", "target": "mid", "peer": "leaf", "start": 600}
    fault["duration"] = 300
    scenario = make_scenario(chain_topology(), patch=patch, duration=1200, faults=[fault])
    run = run_with(scenario, tmp_path, rate=0.05, logs=False)
    to_leaf = [
        s for s in run.spans if s.kind == "client" and s.attributes["peer.service"] == "leaf"
    ]
    by_parent = defaultdict(list)
    for s in to_leaf:
        by_parent[s.parent_id].append(s)
    cut = [calls for calls in by_parent.values() if 605 <= min(s.start for s in calls) < 890]
    assert len(cut) > 20
    for calls in cut:
        calls.sort(key=lambda s: s.attributes["rpc.attempt"])
        assert [s.attributes["rpc.attempt"] for s in calls] == [1, 2]
        assert all(s.error and s.attributes["error.type"] == "timeout" for s in calls)
        assert all(abs(s.duration - 1.0) < 1e-9 for s in calls)
        assert abs(calls[1].start - (calls[0].end + 0.05)) < 1e-9
    assert not any(s.service == "leaf" and 605 <= s.start < 895 for s in run.spans)
    calm = [s for s in run.spans if s.start < 600 and s.kind == "client"]
    assert calm and not any(s.error for s in calm)


# -- logs ------------------------------------------------------------------------------------------
def _traffic_lines(run: Run) -> int:
    return sum(
        r["level"] == "INFO" and not r["template_id"].startswith(EVENT_TEMPLATES)
        for r in run.logs()
    )


def test_info_volume_is_proportional_to_traffic(tmp_path: Path) -> None:
    topology = topology_dict("online-boutique")
    runs = []
    for name, rate in (("low", 40.0), ("high", 80.0)):
        workload = {"classes": [{"name": "all", "entry": "frontend", "rate": rate}], "noise": 0.05}
        scenario = make_scenario(topology, duration=600, workload=workload)
        runs.append(run_with(scenario, tmp_path / name, info_rate=0.01))
    lines = [_traffic_lines(run) for run in runs]
    served = [run.values[:, :, M["throughput"]].sum() for run in runs]
    assert served[1] / served[0] == pytest.approx(2.0, rel=0.05)
    # Poisson counts: the log of their ratio has standard error sqrt(1/n1 + 1/n2)
    se = math.sqrt(1 / lines[0] + 1 / lines[1])
    assert abs(math.log(lines[1] / lines[0]) - math.log(served[1] / served[0])) < 4 * se
    expected = 0.01 * served[0] * runs[0].scenario.tick
    assert abs(lines[0] - expected) < 4 * math.sqrt(expected)


def test_every_record_is_complete_and_carries_a_trace_id(outage: Run) -> None:
    logs = outage.logs()
    assert len(logs) > 1000
    spans = {(s.trace_id, s.span_id): s for s in outage.spans}
    linked = 0
    for r in logs:
        assert {"time", "t", "service", "level", "template_id", "message", "trace_id"} <= set(r)
        assert HEX32.match(r["trace_id"])
        assert r["level"] in ("INFO", "WARN", "ERROR")
        assert r["service"] in outage.names
        assert r["time"] == iso_time(r["t"]) and r["time"].endswith("Z")
        if "span_id" in r:
            span = spans[(r["trace_id"], r["span_id"])]
            assert span.service == r["service"]
            assert int(span.start) == int(r["t"]) or abs(span.start - r["t"]) < 1.0
            linked += 1
    assert linked > 20, "lines borrow the ids of sampled spans of their service and tick"
    assert [r["t"] for r in logs] == sorted(r["t"] for r in logs)


def test_oom_kills_and_back_off_are_logged(tmp_path: Path) -> None:
    """Memory-leak scenario, logs only (as in the request fidelity: no sampler)."""
    run = run_with(load_scenario(SCENARIOS / "memory-leak.yaml"), tmp_path, info_rate=1e-5)
    logs = run.logs()
    oom = [r for r in logs if r["template_id"] == "pod.oom"]
    kills = [e for e in run.events if e["kind"] == "pod_crash" and e["reason"] == "OOMKilled"]
    assert kills and len(oom) == len(kills)
    assert all(r["service"] == "cartservice" and "OOMKilled" in r["message"] for r in oom)
    assert all(r["level"] == "ERROR" and "span_id" not in r for r in oom)
    backoff = [r for r in logs if r["template_id"] == "pod.backoff"]
    assert backoff and all("Back-off restarting failed container" in r["message"] for r in backoff)
    warned = [r["t"] for r in logs if r["template_id"] == "memory.high"]
    assert warned and min(warned) < min(r["t"] for r in oom), "memory warnings precede the kill"
    memory_lines = ("memory.high", "pod.oom", "pod.backoff", "pod.crash")
    assert not any(r["t"] < 3600 and r["template_id"] in memory_lines for r in logs)


def test_stack_traces_follow_a_bad_deploy_until_rollback(tmp_path: Path) -> None:
    run = run_with(load_scenario(SCENARIOS / "bad-deploy.yaml"), tmp_path, info_rate=1e-5)
    logs = run.logs()
    deploy, rollback = 3600.0, 3600.0 + 2700.0
    exceptions = [r for r in logs if r["template_id"] == "request.exception"]
    assert len(exceptions) > 10
    assert all(deploy <= r["t"] <= rollback + 1 for r in exceptions)
    assert {r["service"] for r in exceptions} == {"productcatalogservice"}
    assert all("goroutine" in r["stack"] and "\n" in r["stack"] for r in exceptions)
    templates = {r["template_id"] for r in logs}
    assert {"deploy.start", "deploy.rollback"} <= templates


def test_breaker_transitions_and_fail_fast_calls(tmp_path: Path) -> None:
    fault = {"kind": "dependency_outage", "target": "leaf", "start": 300, "duration": 300}
    scenario = make_scenario(chain_topology(breaker=True), duration=900, faults=[fault])
    run = run_with(scenario, tmp_path, rate=0.05)
    opened = [e for e in run.events if e["kind"] == "breaker" and e["state"] == "open"]
    assert opened
    logs = run.logs()
    breaker_logs = [r for r in logs if r["template_id"] == "breaker.open"]
    assert len(breaker_logs) == len(opened)
    assert all(
        r["service"] == "mid" and "circuit breaker open" in r["message"] for r in breaker_logs
    )
    fast = [s for s in run.spans if s.attributes.get("error.type") == "circuit_open"]
    assert fast and all(s.duration == 0.0 and s.kind == "client" for s in fast)


# -- import-traces ---------------------------------------------------------------------------------
def test_round_trip_recovers_the_topology(steady: Run, tmp_path: Path) -> None:
    out = tmp_path / "imported.yaml"
    assert main(["import-traces", str(steady.out / "traces.json"), "-o", str(out)]) == 0
    topo = load_topology(out)
    declared = steady.scenario.topology
    reachable = nx.descendants(declared.graph(), "frontend") | {"frontend"}
    assert set(topo.services) == reachable
    edges = {(c.source, c.target): c for c in topo.calls}
    assert set(edges) == {(c.source, c.target) for c in declared.calls}
    requests = Counter(s.service for s in steady.spans if s.kind == "server")
    for call in declared.calls:
        got = edges[(call.source, call.target)]
        k = call.per_request * call.probability
        # calls per request lie in [0, m]: variance ≤ m·k, so the mean's SE ≤ sqrt(m·k/n)
        m = math.ceil(call.per_request)
        tolerance = 4 * math.sqrt(m * k / requests[call.source])
        assert abs(got.per_request * got.probability - k) < tolerance, call
        assert got.sync == call.sync
    for name, svc in topo.services.items():
        assert svc.service_time.mean_ms > 0, name


def _jaeger_fixture() -> dict:
    """gateway → users (client/server pair), gateway → orders (no client span, 2 calls in one
    trace), orders → db (client span only, db.system), orders ⇢ mailer (FOLLOWS_FROM)."""

    def span(sid, pid, op, start, dur, refs=(), tags=()):
        return {
            "traceID": "t1", "spanID": sid, "operationName": op, "processID": pid,
            "startTime": start, "duration": dur,
            "references": [{"refType": r, "traceID": "t1", "spanID": p} for r, p in refs],
            "tags": [{"key": k, "type": "string", "value": v} for k, v in tags],
        }  # fmt: skip

    def trace(tid: str, n_orders: int) -> dict:
        server, client = [("span.kind", "server")], [("span.kind", "client")]
        spans = [
            span("g", "p1", "GET /", 0, 100_000, tags=server),
            span("gc", "p1", "users", 5_000, 20_000, [("CHILD_OF", "g")], client),
            span("u", "p2", "users", 6_000, 18_000, [("CHILD_OF", "gc")], server),
        ]
        db = [*client, ("peer.service", "db"), ("db.system", "postgresql")]
        for i in range(n_orders):
            o, start = f"o{i}", 30_000 + i * 30_000
            spans += [
                span(o, "p3", "orders", start, 25_000, [("CHILD_OF", "g")]),
                span(f"d{i}", "p3", "SELECT", start + 1_000, 10_000, [("CHILD_OF", o)], db),
                span(f"m{i}", "p4", "send", start + 2_000, 50_000, [("FOLLOWS_FROM", o)]),
            ]
        for s in spans:
            s["traceID"] = tid
            for r in s["references"]:
                r["traceID"] = tid
        processes = {
            "p1": {"serviceName": "gateway"}, "p2": {"serviceName": "users"},
            "p3": {"serviceName": "orders"}, "p4": {"serviceName": "mailer"},
        }  # fmt: skip
        return {"traceID": tid, "spans": spans, "processes": processes}

    return {"data": [trace("t1", 2), trace("t2", 0)], "total": 2, "limit": 0, "errors": None}


def test_import_a_hand_written_jaeger_file(tmp_path: Path) -> None:
    path = tmp_path / "jaeger.json"
    path.write_text(json.dumps(_jaeger_fixture()))
    topology, summary = import_traces(path, name="shop")
    assert summary["format"] == "jaeger" and summary["traces"] == 2
    assert summary["entries"] == {"gateway": 2}
    services = topology["services"]
    assert set(services) == {"gateway", "users", "orders", "db", "mailer"}
    assert services["db"]["kind"] == "store"
    calls = {(c["from"], c["to"]): c for c in topology["calls"]}
    assert set(calls) == {("gateway", "users"), ("gateway", "orders"), ("orders", "db"),
                          ("orders", "mailer")}  # fmt: skip
    assert calls[("gateway", "users")] == {"from": "gateway", "to": "users", "per_request": 1.0,
                                           "probability": 1.0}  # fmt: skip
    assert calls[("gateway", "orders")]["per_request"] == 2.0
    assert calls[("gateway", "orders")]["probability"] == 0.5
    assert calls[("orders", "mailer")]["sync"] is False
    # gateway: 100 ms less its synchronous calls (20 + 2 × 25 in trace 1, 20 in trace 2)
    assert services["gateway"]["service_time"]["mean_ms"] == pytest.approx((30 + 80) / 2)
    assert services["orders"]["service_time"]["mean_ms"] == pytest.approx(15.0)
    assert services["db"]["service_time"]["mean_ms"] == pytest.approx(10.0)
    out = tmp_path / "shop.yaml"
    assert main(["import-traces", str(path), "-o", str(out), "--name", "shop"]) == 0
    assert load_topology(out).name == "shop"
    assert out.read_text().startswith("# Imported by `firebreak import-traces`")


def test_import_reads_otlp_json_lines(steady: Run, tmp_path: Path) -> None:
    """The collector's file exporter writes one request per line; both lines are read."""
    doc = steady.traces()
    half = len(doc["resourceSpans"]) // 2
    parts = (doc["resourceSpans"][:half], doc["resourceSpans"][half:])
    lines = [{"resourceSpans": part} for part in parts]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    fmt, spans = read_spans(path)
    assert fmt == "otlp" and len(spans) == len(steady.spans)


def _bad(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data)


def _jaeger_one(span: dict, processes: dict | None = None) -> dict:
    trace = {"traceID": "t", "spans": [span]}
    if processes is not None:
        trace["processes"] = processes
    return {"data": [trace]}


def _otlp_one(span: dict, service: str | None = "a") -> dict:
    attrs = [{"key": "service.name", "value": {"stringValue": service}}] if service else []
    return {
        "resourceSpans": [{"resource": {"attributes": attrs}, "scopeSpans": [{"spans": [span]}]}]
    }


P1 = {"p1": {"serviceName": "a"}}
J_SPAN = {"spanID": "a", "processID": "p1", "startTime": 1, "duration": 1}
O_SPAN = {"traceId": "t", "spanId": "s", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
BAD_INPUTS = [
    ("", "empty file"),
    ("{not json", "not valid JSON (line 1"),
    ({"foo": 1}, "neither Jaeger JSON"),
    ([1, 2], "neither Jaeger JSON"),
    ({"data": []}, "no spans found"),
    ({"data": {"x": 1}}, "data: expected a list"),
    (_jaeger_one({"processID": "p1"}), "data[0].spans[0]: missing 'spanID'"),
    (_jaeger_one({**J_SPAN, "processID": "p9"}, {}), "processID: 'p9' is not in the trace's"),
    (_jaeger_one({**J_SPAN, "duration": "x"}, P1), "data[0].spans[0].duration: not a number: 'x'"),
    (_jaeger_one({**J_SPAN, "duration": -5}, P1), "data[0].spans[0].duration: negative"),
    (_jaeger_one({**J_SPAN, "references": [{"refType": "X", "spanID": "b"}]}, P1), "unknown 'X'"),
    (_otlp_one(O_SPAN, service=None), "resourceSpans[0].resource: no 'service.name'"),
    (_otlp_one({**O_SPAN, "kind": 9}), "spans[0].kind: unknown span kind 9"),
    (_otlp_one({**O_SPAN, "endTimeUnixNano": "0"}), "spans[0]: ends before it starts"),
    (_otlp_one({k: v for k, v in O_SPAN.items() if k != "traceId"}), "missing 'traceId'"),
]


@pytest.mark.parametrize(("data", "message"), BAD_INPUTS)
def test_import_errors_name_the_file_and_the_problem(
    tmp_path: Path, data: Any, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(_bad(data))
    with pytest.raises(TraceImportError) as info:
        import_traces(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_import_cli_errors_exit_2(tmp_path: Path, capsys) -> None:
    assert (
        main(["import-traces", str(tmp_path / "missing.json"), "-o", str(tmp_path / "t.yaml")]) == 2
    )
    assert "missing.json: file not found" in capsys.readouterr().err
    assert main(["import-traces", str(tmp_path), "-o", str(tmp_path / "t.yaml")]) == 2
    assert "is a directory" in capsys.readouterr().err
    good = tmp_path / "jaeger.json"
    good.write_text(json.dumps(_jaeger_fixture()))
    assert main(["import-traces", str(good), "-o", str(tmp_path / "no" / "t.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
