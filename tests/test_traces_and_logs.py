"""Sampled traces (OTLP JSON) and template logs (JSONL), against the telemetry they follow.

Statistical checks take their tolerance from the sample (standard errors, Poisson counts);
a small stated slack is added only where the flow model itself approximates.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import SCENARIOS, chain_topology, make_scenario, topology_dict
from trace_runs import Run, otlp_spans, run_with, span_attr

from twin.fields import M
from twin.scenario.import_traces import import_traces
from twin.scenario.loader import load_scenario
from twin.telemetry.logs import LogSink, iso_time
from twin.telemetry.otlp import OtlpTraceWriter
from twin.telemetry.spans import EPOCH_UNIX_S, Span

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
EVENT_TEMPLATES = ("pod.", "deploy.", "breaker.")


# -- OTLP structure ----------------------------------------------------------------------
def test_otlp_document_is_well_formed(steady: Run) -> None:
    doc = steady.traces()
    spans = otlp_spans(doc)
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
            assert span_attr(parent, "peer.service") == s["service"]
        synchronous = not span_attr(s, "rpc.async") and not span_attr(parent, "rpc.async")
        timed_out = span_attr(parent, "error.type") == "timeout"
        if synchronous and not timed_out:  # children lie inside their parents
            assert int(parent["startTimeUnixNano"]) <= start
            assert end <= int(parent["endTimeUnixNano"])
        if s.get("status", {}).get("code") == 2:
            assert span_attr(s, "error.type")
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
    spans = otlp_spans(json.loads((tmp_path / "traces.json").read_text()))
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
    kept = otlp_spans(json.loads((tmp_path / "half.json").read_text()))
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
                   info_rate=0.01, traced_share=0.5)  # fmt: skip
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
