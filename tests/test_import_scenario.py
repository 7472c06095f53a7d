"""`firebreak import-traces` writes a scenario `firebreak run` accepts as it is: timeouts and
retries from what the calls show, capacity for the observed load, databases seen only from
their clients kept as stores. Small hand-written trace files, in temporary folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import yaml

from firebreak.cli import main
from twin.scenario.loader import load_scenario
from twin.scenario.trace_scenario import import_scenario
from twin.telemetry.longtable import read_long_table

S = 1_000_000  # microseconds per second


def _span(tid, sid, pid, start, dur, parent=None, kind=None, tags=()) -> dict:
    tags = ([("span.kind", kind)] if kind else []) + list(tags)
    return {
        "traceID": tid,
        "spanID": sid,
        "operationName": sid,
        "processID": pid,
        "startTime": int(start),
        "duration": int(dur),
        "references": [{"refType": "CHILD_OF", "traceID": tid, "spanID": parent}] if parent else [],
        "tags": [{"key": k, "type": "string", "value": v} for k, v in tags],
    }


def _slow_calls(n: int = 200, every_s: float = 3.0, seed: int = 0) -> dict:
    """gateway → slow, the callee taking about 38 s: a batch export behind an API."""
    rng = np.random.default_rng(seed)
    processes = {"p1": {"serviceName": "gateway"}, "p2": {"serviceName": "slow"}}
    traces = []
    for i in range(n):
        tid, t0 = f"t{i}", i * every_s * S
        slow = 38 * S * rng.lognormal(0.0, 0.15)
        spans = [
            _span(tid, "g", "p1", t0, slow + 4_000, kind="server"),
            _span(tid, "c", "p1", t0 + 1_000, slow + 1_000, "g", "client"),
            _span(tid, "s", "p2", t0 + 1_500, slow, "c", "server"),
        ]
        traces.append({"traceID": tid, "spans": spans, "processes": processes})
    return {"data": traces}


def _write(tmp_path: Path, name: str, doc: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_long_calls_get_a_timeout_above_them_and_the_scenario_runs(tmp_path: Path) -> None:
    """A 38 s call with the 1 s default timeout failed nearly every request; imported, the
    scenario runs as is and serves them."""
    traces = _write(tmp_path, "slow.json", _slow_calls())
    out = tmp_path / "slow.yaml"
    assert main(["import-traces", str(traces), "-o", str(out), "--duration", "15m"]) == 0
    scenario = load_scenario(out)
    (edge,) = scenario.topology.calls
    longest = max(
        s["duration"] for t in _slow_calls()["data"] for s in t["spans"] if s["spanID"] == "c"
    )
    assert edge.timeout_ms is not None and edge.timeout_ms >= 2 * longest / 1000
    # the callee holds ~0.33/s × 38 s = 13 requests: more than the default 16 workers at
    # half load, so the import sized the pool
    assert scenario.topology.services["slow"].workers > 16
    # what the simulation served, not what a scrape saw (background errors are telemetry)
    doc = yaml.safe_load(out.read_text())
    doc["telemetry"] = {**doc.get("telemetry", {}), "mode": "ideal"}
    ideal_yaml = tmp_path / "slow-ideal.yaml"
    ideal_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = tmp_path / "run"
    assert main(["run", str(ideal_yaml), "--out", str(run), "--quiet", "--no-labels"]) == 0
    table = read_long_table(run)
    gateway = pc.equal(table["service"].cast("string"), "gateway")
    rows = table.filter(gateway)
    metric = rows["metric"].cast("string")
    served = pc.sum(rows.filter(pc.equal(metric, "throughput"))["value"]).as_py()
    failed = sum(
        pc.sum(rows.filter(pc.equal(metric, m))["value"]).as_py()
        for m in ("error_rate", "shed_rate")
    )
    assert served > 0 and failed / (served + failed) < 0.01, (served, failed)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["slo_adherence"] > 0.9  # the SLO sits above the observed p99


def _otlp(spans_by_service: dict[str, list[dict]]) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": s}}]},
                "scopeSpans": [{"spans": spans}],
            }
            for s, spans in spans_by_service.items()
        ]
    }


def _o(tid, sid, start_us, dur_us, parent=None, kind=2, error=False, **attrs) -> dict:
    span = {
        "traceId": tid,
        "spanId": sid,
        "kind": kind,
        "startTimeUnixNano": str(int(start_us * 1000)),
        "endTimeUnixNano": str(int((start_us + dur_us) * 1000)),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
    }
    if parent:
        span["parentSpanId"] = parent
    if error:
        span["status"] = {"code": 2}
    return span


def _retried_calls(n: int = 60) -> dict:
    """shop → pay: every third call's first attempt is cut at 2 s and retried 100 ms later;
    every ninth needs a third attempt, 200 ms after the second failed."""
    shop, pay = [], []
    for i in range(n):
        tid, t0 = f"{i:032x}", i * 2 * S
        attempts = [(False, 40_000)]
        if i % 3 == 0:
            attempts = [(True, 2_000_000), (False, 40_000)]
        if i % 9 == 0:
            attempts = [(True, 2_000_000), (True, 2_000_000), (False, 40_000)]
        t, gap = t0 + 1_000, 100_000
        for k, (err, dur) in enumerate(attempts):
            cid = f"c{i}-{k}"
            shop.append(_o(tid, cid, t, dur, "root", kind=3, error=err))
            # pay was slow, not failing: the client cut the call at its timeout
            pay.append(_o(tid, f"p{i}-{k}", t + 100, 3 * dur, cid))
            t += dur + gap
            gap *= 2
        shop.append(_o(tid, "root", t0, t - t0 + 1_000))
    return _otlp({"shop": shop, "pay": pay})


def test_timeouts_and_retries_come_from_the_attempts(tmp_path: Path) -> None:
    path = _write(tmp_path, "retries.json", _retried_calls())
    scenario, summary = import_scenario(path)
    (edge,) = scenario["topology"]["calls"]
    assert edge["timeout_ms"] == pytest.approx(2000, abs=1)
    assert edge["retries"] == {"max": 2, "backoff_ms": 100.0, "multiplier": 2.0}
    # a retry is an attempt, not another call
    assert edge["per_request"] == 1.0 and edge["probability"] == 1.0
    assert summary["settings"]["timeouts observed"] == ["shop->pay 2000 ms"]


def _db_clients(n: int = 20) -> dict:
    """orders calls MySQL (named by server.address) and Redis (db.system only): neither
    database is instrumented, and no span says peer.service."""
    orders = []
    for i in range(n):
        tid, t0 = f"{i:032x}", i * S
        orders += [
            _o(tid, "r", t0, 30_000),
            _o(tid, "q", t0 + 1_000, 8_000, "r", kind=3, **{
                "db.system": "mysql", "server.address": "orders-mysql"}),
            _o(tid, "k", t0 + 10_000, 2_000, "r", kind=3, **{"db.system": "redis"}),
        ]  # fmt: skip
    return _otlp({"orders": orders})


def test_databases_seen_only_from_their_clients_are_stores(tmp_path: Path) -> None:
    path = _write(tmp_path, "db.json", _db_clients())
    scenario, _ = import_scenario(path)
    services = scenario["topology"]["services"]
    assert set(services) == {"orders", "orders-mysql", "redis"}
    assert services["orders-mysql"]["kind"] == services["redis"]["kind"] == "store"
    assert services["orders-mysql"]["service_time"]["mean_ms"] == pytest.approx(8.0)
    edges = {(c["from"], c["to"]) for c in scenario["topology"]["calls"]}
    assert edges == {("orders", "orders-mysql"), ("orders", "redis")}
    # orders' own time: 30 ms less the 8 ms and 2 ms it waited on the databases
    assert services["orders"]["service_time"]["mean_ms"] == pytest.approx(20.0)


def test_rate_flags(tmp_path: Path) -> None:
    """The entry rate: observed from the roots' arrivals, scaled by the traced share, or
    given; one instant of traces falls back to a stated assumption."""
    path = _write(tmp_path, "db.json", _db_clients(21))  # 21 roots, one a second
    observed, _ = import_scenario(path)
    assert observed["workload"]["classes"][0]["rate"] == pytest.approx(1.0)
    scaled, _ = import_scenario(path, sampled=0.01)
    assert scaled["workload"]["classes"][0]["rate"] == pytest.approx(100.0)
    given, summary = import_scenario(path, rate=7.0, duration=60, seed=3)
    assert given["workload"]["classes"][0]["rate"] == pytest.approx(7.0)
    assert given["duration"] == 60 and given["seed"] == 3 and "--rate" in summary["rate_source"]
    single = _write(tmp_path, "one.json", _db_clients(1))
    _, summary = import_scenario(single)
    assert "assumed" in summary["rate_source"]


def test_import_is_deterministic(tmp_path: Path) -> None:
    path = _write(tmp_path, "retries.json", _retried_calls())
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert main(["import-traces", str(path), "-o", str(a)]) == 0
    assert main(["import-traces", str(path), "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
