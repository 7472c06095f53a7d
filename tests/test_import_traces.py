"""Importing traces (Jaeger JSON, OTLP JSON and JSON lines) into a topology, and every way a
trace file can be wrong."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from trace_runs import Run

from firebreak.cli import main
from twin.scenario.import_traces import TraceImportError, import_traces, read_spans
from twin.scenario.loader import load_scenario, load_topology


# -- import-traces ---------------------------------------------------------------------------------
def test_round_trip_recovers_the_topology(steady: Run, tmp_path: Path) -> None:
    out = tmp_path / "imported.yaml"
    argv = ["import-traces", str(steady.out / "traces.json"), "-o", str(out), "--sampled", "0.005"]
    assert main(argv) == 0
    scenario = load_scenario(out)
    topo = scenario.topology
    # the entry rate from the root spans' arrivals, scaled by the traced share
    offered = steady.metric("frontend", "arrival_rate").mean()
    rate = sum(c.rate for c in scenario.workload.classes)
    assert abs(rate - offered) < 0.1 * offered, (rate, offered)
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
    assert load_scenario(out).name == "shop"
    assert main(["import-traces", str(path), "-o", str(out), "--topology-only"]) == 0
    assert load_topology(out).name == "jaeger"
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
