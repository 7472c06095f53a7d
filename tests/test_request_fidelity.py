"""The request fidelity's behaviour: determinism, conservation, timeouts that waste work,
retries, breakers, queue limits, crashes, exact spans, and agreement with the flow model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import chain_topology, make_scenario, topology_dict

from twin.fields import M
from twin.request.engine import RequestSimulation
from twin.run.fidelity import affected_services, run_both
from twin.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[1]


class Keep:
    def __init__(self) -> None:
        self.chunks = []

    def on_chunk(self, chunk) -> None:
        self.chunks.append(chunk)

    def close(self) -> None:
        pass

    def values(self) -> np.ndarray:
        return np.concatenate([c.values for c in self.chunks])


def run(scenario, **kwargs):
    keep = Keep()
    sim = RequestSimulation(scenario, sinks=[keep], **kwargs)
    sim.run()
    return sim, keep


def chain(rate=40.0, duration=120, faults=(), patch=None, **topo_kwargs):
    return make_scenario(
        chain_topology(**topo_kwargs),
        patch=patch,
        duration=duration,
        faults=list(faults),
        workload={"classes": [{"name": "all", "entry": "entry", "rate": rate}], "noise": 0.0},
    )


def series(sim, keep, service, metric):
    return keep.values()[:, sim.topo.service_index(service), M[metric]]


def test_same_seed_same_telemetry_and_spans_other_seed_differs():
    sc = chain(duration=60)
    spans = [[], [], []]
    _, ka = run(sc, trace_rate=0.2, span_sinks=[spans[0].extend])
    _, kb = run(sc, trace_rate=0.2, span_sinks=[spans[1].extend])
    _, kc = run(sc.model_copy(update={"seed": 99}), trace_rate=0.2, span_sinks=[spans[2].extend])
    assert np.array_equal(ka.values(), kb.values())
    assert spans[0] == spans[1] and spans[0]
    assert not np.array_equal(ka.values(), kc.values())


def test_runs_with_crashes_are_identical_across_processes(tmp_path):
    """Same seed in two separate processes, crashes (which kill visits drawn at random)
    included: the same bytes."""
    code = (
        "import sys, numpy as np; sys.path.insert(0, 'tests');"
        "from test_request_fidelity import chain, run;"
        "f = [{'kind': 'crash', 'target': 'mid', 'start': 20, 'duration': 20, 'share': 0.5}];"
        "sim, keep = run(chain(rate=80, duration=60, faults=f));"
        "np.save(sys.argv[1], keep.values())"
    )
    outs = []
    for i in range(2):
        path = tmp_path / f"run{i}.npy"
        res = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT,
            timeout=120,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        outs.append(np.load(path))
    assert np.array_equal(outs[0], outs[1])
    assert outs[0][:, :, M["error_rate"]].sum() > 0


def test_requests_are_conserved_through_crashes_outages_and_timeouts():
    faults = [
        {"kind": "crash", "target": "mid", "start": 20, "duration": 30, "share": 0.5},
        {"kind": "dependency_outage", "target": "other", "start": 40, "duration": 20},
        {"kind": "latency", "target": "leaf", "start": 70, "duration": 30, "add_ms": 1500},
    ]
    sim, _ = run(chain(rate=60, duration=150, faults=faults))
    cons = sim.conservation()
    lhs = cons["arrived"]
    rhs = cons["completed"] + cons["failed"] + cons["shed"] + cons["in_flight"]
    assert np.array_equal(lhs, rhs)
    assert (cons["failed"] > 0).sum() >= 2 and cons["shed"].sum() > 0


def test_a_timed_out_call_fails_the_caller_while_the_callee_still_does_the_work():
    slow = {"kind": "latency", "target": "leaf", "start": 30, "duration": 60, "add_ms": 1500}
    # 8 rps × 1.5 s = 12 busy workers of the leaf's 16: slow, not saturated
    sim, keep = run(chain(rate=8, duration=120, faults=[slow]))
    window = slice(40, 85)
    mid_errors = series(sim, keep, "mid", "error_ratio")[window]
    leaf_ok = series(sim, keep, "leaf", "throughput")[window]
    # every mid→leaf call times out at 1 s, yet the leaf completes its (slow) requests
    assert mid_errors.mean() > 0.95
    assert leaf_ok.mean() > 0.8 * 8
    # the caller waited its timeout, not the callee's 1.5 s
    mid_latency = series(sim, keep, "mid", "latency_mean_ms")[window]
    assert 950 < mid_latency.mean() < 1300


def test_retries_multiply_attempts_as_the_geometric_sum():
    p, retries = 0.4, 2
    patch = {"defaults": {"retries": {"max": retries, "backoff_ms": 0}}}
    errors = {"kind": "errors", "target": "leaf", "start": 0, "rate": p}
    sim, keep = run(chain(rate=50, duration=200, faults=[errors], patch=patch))
    mid_calls = series(sim, keep, "mid", "arrival_rate").sum()
    leaf_attempts = series(sim, keep, "leaf", "arrival_rate").sum()
    expected = sum(p**i for i in range(retries + 1))
    ratio = leaf_attempts / mid_calls
    # binomial noise on ~10,000 calls: a few per cent at most
    assert ratio == pytest.approx(expected, rel=0.04)
    # and the caller fails when every attempt failed: p^(n+1)
    assert series(sim, keep, "mid", "error_ratio")[20:].mean() == pytest.approx(
        p ** (retries + 1), abs=0.02
    )


def test_a_breaker_opens_on_an_outage_and_stops_the_calls():
    outage = {"kind": "dependency_outage", "target": "leaf", "start": 30, "duration": 60}
    sim, keep = run(chain(rate=40, duration=120, faults=[outage], breaker=True))
    opened = [e for c in keep.chunks for e in c.events if e["kind"] == "breaker"]
    assert opened and opened[0]["state"] == "open" and 30 <= opened[0]["time"] < 45
    leaf_arrivals = series(sim, keep, "leaf", "arrival_rate")
    assert leaf_arrivals[50:60].mean() < 0.1 * leaf_arrivals[:25].mean()


def test_a_full_queue_sheds_and_the_shed_requests_fail_fast():
    patch = {"services": {"leaf": {"workers": 1, "queue_limit": 5, "replicas": 1}}}
    sim, keep = run(chain(rate=400, duration=60, patch=patch))
    shed = series(sim, keep, "leaf", "shed_rate")
    assert shed[10:].mean() > 50
    assert series(sim, keep, "leaf", "queue")[10:].max() <= 5


def test_a_crash_fails_the_requests_the_pod_was_holding():
    crash = {"kind": "crash", "target": "mid", "start": 30, "duration": 30, "share": 1.0}
    sim, keep = run(chain(rate=40, duration=90, faults=[crash]))
    failed = series(sim, keep, "mid", "error_rate") + series(sim, keep, "mid", "shed_rate")
    assert failed[:29].sum() == 0
    assert failed[30:60].mean() > 30
    ready = series(sim, keep, "mid", "ready_replicas")
    assert ready[35] == 0 and ready[-1] == 2


def test_spans_form_consistent_trees_and_a_timeout_ends_at_the_deadline():
    slow = {"kind": "latency", "target": "leaf", "start": 20, "duration": 40, "add_ms": 1500}
    spans = []
    run(chain(rate=20, duration=70, faults=[slow]), trace_rate=1.0, span_sinks=[spans.extend])
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans)
    roots = [s for s in spans if s.parent_id is None]
    assert roots and all(s.service == "entry" and s.kind == "server" for s in roots)
    for s in spans:
        if s.parent_id is None:
            continue
        parent = by_id[s.parent_id]
        assert parent.trace_id == s.trace_id
        if s.kind == "client":
            # a synchronous call lies inside its caller's server span
            assert parent.kind == "server" and parent.service == s.service
            assert parent.start <= s.start <= s.end <= parent.end + 1e-9
        else:
            assert parent.kind == "client" and parent.attributes["peer.service"] == s.service
    timeouts = [s for s in spans if s.attributes.get("error.type") == "timeout"]
    assert timeouts and all(s.duration == pytest.approx(1.0) for s in timeouts)
    # the callee's own span outlives its caller's give-up: wasted work is visible
    leaf_under_timeout = [by_id[s.parent_id] for s in spans if s.service == "leaf"]
    assert any(
        s.end - p.end > 0.4
        for s, p in zip([s for s in spans if s.service == "leaf"], leaf_under_timeout, strict=True)
    )


def test_frames_stream_equals_the_batch_run():
    sc = chain(duration=40)
    _, keep = run(sc)
    stream = np.stack([fr.values for fr in RequestSimulation(sc).frames()])
    assert np.array_equal(stream, keep.values())


def test_online_boutique_flow_agrees_with_request_at_moderate_load():
    sc = make_scenario(
        topology_dict("online-boutique"),
        duration=420,
        seed=5,
        workload={
            "classes": [
                {"name": "browse", "entry": "frontend", "rate": 90},
                {"name": "checkout", "entry": "frontend", "rate": 10},
            ],
            "noise": 0.05,
        },
    )
    report = run_both(sc, warmup_s=60)
    assert report.within_targets() == {
        "throughput": True,
        "latency_mean_ms": True,
        "latency_p99_ms": True,
        "error_ratio": True,
    }, report.table()
    assert report.storms_agree() and report.storm_onset == {"flow": None, "request": None}


def test_both_fidelities_see_the_same_services_hit_by_a_latency_fault():
    sc = load_scenario(ROOT / "scenarios" / "fidelity-latency.yaml")
    short = sc.model_copy(
        update={
            "duration": 330.0,
            "faults": [sc.faults[0].model_copy(update={"start": 90.0, "duration": 210.0})],
        }
    )
    flow = affected_services(short, 0, "flow")
    request = affected_services(short, 0, "request")
    assert "productcatalogservice" in flow and "frontend" in flow
    assert set(flow) == set(request)
    assert "paymentservice" not in flow  # not on the catalog's path


def test_cli_runs_request_fidelity_and_compares(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "firebreak.cli",
            "run",
            str(ROOT / "scenarios" / "steady-state.yaml"),
            "--fidelity",
            "request",
            "--duration",
            "2m",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert '"fidelity": "request"' in (out / "summary.json").read_text()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "firebreak.cli",
            "fidelity",
            str(ROOT / "scenarios" / "steady-state.yaml"),
            "--duration",
            "2m",
            "--warmup",
            "5m",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 2
    assert "--warmup: 300s is not shorter than the run (120s)" in res.stderr
