"""Multimodal RCA from first principles: exclusive time, where a network delay shows, which
log lines an operation stopped writing, and the fusion of what each modality says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.rca.base import IncidentTelemetry
from detectors.rca.log_events import event_scores
from detectors.rca.multimodal import MultimodalRca, saturation_scores
from detectors.rca.span_graph import call_graph, call_tree
from detectors.rca.trace_latency import LatencySettings, latency_scores

T0 = 1_700_000_000.0
# front → a → (b → d), front → c
CALLS = (("front", "a"), ("a", "b"), ("b", "d"), ("front", "c"))


def span(trace, sid, parent, service, op, start, end):
    return {"trace": trace, "span": sid, "parent": parent, "service": service, "pod": service,
            "op": op, "start": start, "end": end, "dur_ms": (end - start) * 1e3, "kind": "",
            "error": np.nan, "peer": ""}  # fmt: skip


def request(trace: str, t: float, rng: np.random.Generator, delay: dict[str, float]) -> list[dict]:
    """One request down the call tree; `delay[x]` (s) holds back x's responses (and, with
    key `x+out`, its own calls out: an egress-wide delay)."""
    rows: list[dict] = []

    def serve(service: str, sid: str, parent: str, start: float) -> float:
        own = rng.uniform(0.002, 0.003)
        clock = start + own / 2
        children = [callee for caller, callee in CALLS if caller == service]
        body = []
        for k, callee in enumerate(children):
            cid, sid2 = f"{sid}c{k}", f"{sid}s{k}"
            net = rng.uniform(0.0008, 0.0012)
            out_delay = delay.get(f"{service}+out", 0.0)
            callee_start = clock + net / 2 + out_delay
            callee_end = serve(callee, sid2, cid, callee_start)
            end = callee_end + net / 2 + delay.get(callee, 0.0)
            body.append(span(trace, cid, sid, service, f"GET {callee}", clock, end))
            clock = end
        finish = clock + own / 2
        rows.append(span(trace, sid, parent, service, f"handle {service}", start, finish))
        rows.extend(body)
        return finish

    serve("front", "r", "", t)
    return rows


def spans(n: int, start: float, seed: int, delay: dict[str, float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [r for i in range(n) for r in request(f"t{seed}-{i}", start + i, rng, delay or {})]
    return call_tree(pd.DataFrame(rows))


def test_exclusive_time_is_what_a_span_itself_spent() -> None:
    tree = spans(1, T0, 0)
    by = tree.set_index("op")
    client = by.loc["GET b"]
    server = by.loc["handle b"]
    assert client["callee"] == "b" and server["callee"] == ""
    assert client["self_ms"] == pytest.approx(client["dur_ms"] - server["dur_ms"], abs=1e-6)
    assert by.loc["handle a", "self_ms"] < by.loc["handle a", "dur_ms"] / 2
    assert set(call_graph(tree)) == set(CALLS)


def test_sibling_started_inside_a_span_counts_as_its_work() -> None:
    rows = [span("t", "p", "", "gw", "root", 0.0, 1.0),
            span("t", "h", "p", "gw", "handle", 0.0, 0.9),
            span("t", "post", "p", "gw", "HTTP POST", 0.1, 0.8)]  # fmt: skip
    tree = call_tree(pd.DataFrame(rows)).set_index("span")
    assert tree.loc["h", "self_ms"] == pytest.approx(200.0)  # 900 ms less the 700 ms sibling


@pytest.mark.parametrize("model", ["port", "egress"])
def test_a_delayed_pod_ranks_first_and_its_caller_and_callee_do_not(model: str) -> None:
    base = spans(40, T0, 1)
    delay = {"b": 0.05} if model == "port" else {"b": 0.05, "b+out": 0.05}
    window = spans(40, T0 + 600, 2, delay)
    scores = latency_scores(window, base)
    assert scores.idxmax() == "b"
    # the caller a: one slow call out, weighed 0.5 (b: ~2x a); the callee d (egress): one
    # slow call in, while b adds half its slow call out on top (b: ~1.5x d)
    assert scores["b"] > 1.25 * max(scores.get("a", 0.0), scores.get("d", 0.0))


def test_the_first_edge_rule_misses_a_port_scoped_delay_on_a_busy_caller() -> None:
    """`incident` (median over in- and out-edges) is diluted when the pod's calls out are
    untouched; it is kept only to report the rule registered first."""
    base = spans(40, T0, 1)
    window = spans(40, T0 + 600, 2, {"a": 0.05})  # a: one call in, one call out
    first = latency_scores(window, base, LatencySettings(edges="incident"))
    chosen = latency_scores(window, base)
    assert chosen.idxmax() == "a"
    assert first["a"] < chosen["a"]


def test_an_edge_the_baseline_never_saw_is_judged_against_all_edges() -> None:
    base = spans(40, T0, 1)
    base = base[base["callee"] != "d"]  # the baseline never traced b → d
    window = spans(40, T0 + 600, 2, {"d": 0.05})
    assert latency_scores(window, base).idxmax() == "d"
    strict = LatencySettings(pool_edges=False)
    assert latency_scores(window, base, strict).get("d", 0.0) < 1.0  # its own work is normal


def logs_for(tree: pd.DataFrame, drop_after: str | None = None) -> pd.DataFrame:
    """Two INFO lines in every `handle b` span; the second vanishes after an exception."""
    rows = []
    for s in tree[tree["op"] == "handle b"].itertuples():
        rows.append({"trace": s.trace, "span": s.span, "template": "INFO B#10", "time": s.start})
        if drop_after is None:
            rows.append({"trace": s.trace, "span": s.span, "template": "INFO B#12", "time": s.end})
    return pd.DataFrame(rows)


def test_a_log_line_that_stops_inside_its_operation_flags_the_service() -> None:
    base = spans(30, T0, 1)
    window = spans(30, T0 + 600, 2)
    scores = event_scores(window, logs_for(window, drop_after="B#10"), base, logs_for(base))
    assert scores.idxmax() == "b" and scores["b"] > 0
    calm = event_scores(window, logs_for(window), base, logs_for(base))
    assert calm.max() == 0.0  # nothing changed, nothing flagged


def cpu_table(hot: str | None) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    t = T0 + 60 * np.arange(20)
    cols = {"time": t}
    for s in ("a", "b", "c", "d"):
        cols[f"{s}_CpuUsageRate(%)"] = rng.normal(10, 0.3, 20)
        cols[f"{s}_NodeCpuUsageRate(%)"] = rng.normal(30, 0.3, 20)
    if hot:
        cols[f"{hot}_CpuUsageRate(%)"][12:15] += 40
    cols["c_NodeCpuUsageRate(%)"][12:15] += 400  # the node is busy, not the pod
    return pd.DataFrame(cols)


def test_saturation_reads_the_pods_own_signals_not_its_nodes() -> None:
    table = cpu_table("d")
    scores, top = saturation_scores(table, T0 + 12 * 60, 600, 180)
    assert scores.idxmax() == "d" and top["d"] == "d_CpuUsageRate(%)"


def test_fusion_adds_modalities_that_agree_and_names_its_evidence() -> None:
    base = spans(40, T0 + 60, 1)
    window = spans(40, T0 + 12 * 60, 2, {"b": 0.05})
    telemetry = IncidentTelemetry(spans=window, normal_spans=base)
    method = MultimodalRca()
    causes = method.rank(cpu_table("b"), T0 + 12 * 60, telemetry=telemetry)
    assert causes[0].service == "b"
    ev = causes[0].evidence
    assert ev["modalities"]["metrics"] > 0 and ev["modalities"]["latency"] > 0
    only_traces = method.rank(cpu_table(None), T0 + 12 * 60, telemetry=telemetry)
    assert only_traces[0].service == "b" and causes[0].score > only_traces[0].score
    metrics_only = method.rank(cpu_table("d"), T0 + 12 * 60)
    assert metrics_only[0].service == "d"
