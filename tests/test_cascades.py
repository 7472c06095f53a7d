"""Cascades must emerge from the model: worker pools, timeouts, retries, breakers."""

from __future__ import annotations

import numpy as np
import yaml
from conftest import SCENARIOS, chain_topology, make_scenario, simulate, topology_dict

from twin.scenario.loader import load_scenario

TWO_CLASSES = {
    "classes": [
        {"name": "main", "entry": "entry", "rate": 200},
        {"name": "island", "entry": "island", "rate": 50},
    ],
    "noise": 0.05,
}
FAULT_START, FAULT_END = 1200.0, 2400.0


def _chain_run(breaker: bool, required: bool = True, fault: bool = True):
    faults = (
        [
            {
                "kind": "latency",
                "target": "leaf",
                "start": FAULT_START,
                "duration": FAULT_END - FAULT_START,
                "factor": 200,
            }
        ]
        if fault
        else []
    )
    sc = make_scenario(
        chain_topology(breaker=breaker, mid_to_leaf_required=required),
        workload=TWO_CLASSES,
        faults=faults,
        duration=3600,
    )
    return simulate(sc)


def test_slow_leaf_climbs_to_the_entry_and_spares_unrelated_services():
    run, base = _chain_run(breaker=False), _chain_run(breaker=False, fault=False)
    during = (FAULT_START + 120, FAULT_END)

    def ratio(service: str, metric: str) -> float:
        return float(
            np.mean(run.window(service, metric, *during))
            / max(np.mean(base.window(service, metric, *during)), 1e-9)
        )

    # the leaf slows, mid's workers are all held waiting for it, and the entry follows
    assert ratio("leaf", "latency_p99_ms") > 20
    assert np.mean(run.window("mid", "worker_utilization", *during)) > 0.8
    assert np.mean(base.window("mid", "worker_utilization", *during)) < 0.2
    assert ratio("mid", "latency_p99_ms") > 20
    assert ratio("entry", "latency_p99_ms") > 5
    entry_errors = np.mean(run.window("entry", "error_ratio", *during))
    assert entry_errors > 0.05 + np.mean(base.window("entry", "error_ratio", *during))
    # services off the causal path do not move
    for service in ("other", "island"):
        assert abs(ratio(service, "latency_p99_ms") - 1) < 0.05
        assert np.mean(run.window(service, "error_ratio", *during)) < 1e-6
    # and everything returns once the fault ends
    after = (FAULT_END + 300, 3600)
    assert np.mean(run.window("entry", "latency_p99_ms", *after)) < 1.2 * np.mean(
        base.window("entry", "latency_p99_ms", *after)
    )


def test_circuit_breaker_bounds_the_cascade():
    """An optional call behind a breaker: once it opens, mid fails fast and keeps serving."""
    without = _chain_run(breaker=False, required=False)
    with_breaker = _chain_run(breaker=True, required=False)
    settled = (FAULT_START + 120, FAULT_END)
    p99_without = np.mean(without.window("entry", "latency_p99_ms", *settled))
    p99_with = np.mean(with_breaker.window("entry", "latency_p99_ms", *settled))
    assert p99_with < 0.3 * p99_without
    assert np.mean(with_breaker.window("mid", "worker_utilization", *settled)) < 0.5
    states = [e["state"] for e in with_breaker.events if e["kind"] == "breaker"]
    assert states[0] == "open"
    assert "half_open" in states  # it probes after its cool-down
    assert states[-1] == "closed"  # and closes once the leaf is healthy again
    opened = next(e["time"] for e in with_breaker.events if e["kind"] == "breaker")
    assert FAULT_START <= opened < FAULT_START + 60


def _retry_storm(retries: int):
    raw = yaml.safe_load((SCENARIOS / "retry-storm.yaml").read_text())
    for call in raw["topology_patch"]["calls"]:
        call["retries"] = {"max": retries, "backoff_ms": 0}
    path = SCENARIOS / "retry-storm.yaml"
    return raw, path


def test_retry_storm_outlives_its_trigger_and_recovers_without_retries(tmp_path):
    results = {}
    for retries in (3, 0):
        raw, path = _retry_storm(retries)
        raw["topology"] = str(path.parent / "topologies" / "online-boutique.yaml")
        file = tmp_path / f"storm-{retries}.yaml"
        file.write_text(yaml.safe_dump(raw))
        scenario = load_scenario(file, duration=3 * 3600)
        results[retries] = simulate(scenario)
    trigger = scenario.faults[0]
    trigger_end = trigger.start + trigger.duration
    late = (trigger_end + 3600, 3 * 3600)  # an hour after the trigger is gone
    before = (0, trigger.start)
    stormy, calm = results[3], results[0]
    assert np.mean(stormy.window("frontend", "error_ratio", *late)) > 0.5
    assert np.mean(stormy.window("productcatalogservice", "arrival_rate", *late)) > 2 * np.mean(
        stormy.window("productcatalogservice", "arrival_rate", *before)
    )
    assert np.mean(calm.window("frontend", "error_ratio", *late)) < 0.001
    assert np.mean(calm.window("frontend", "latency_p99_ms", *late)) < 1.2 * np.mean(
        calm.window("frontend", "latency_p99_ms", *before)
    )
    # the trigger did hurt the calm system too: it is a fault, not a no-op
    during = (trigger.start + 30, trigger_end)
    assert np.mean(calm.window("frontend", "error_ratio", *during)) > 0.01


def test_latency_fault_on_online_boutique_labels_the_causal_path():
    """Ground truth by but-for replay: payment's callers are affected, the ad path is not."""
    from twin.run.labels import ground_truth, record_signals

    sc = make_scenario(
        topology_dict("online-boutique"),
        workload={"classes": [{"name": "web", "entry": "frontend", "rate": 100}]},
        faults=[
            {
                "kind": "latency",
                "target": "paymentservice",
                "start": 600,
                "duration": 900,
                "add_ms": 2500,
            }
        ],
        duration=1800,
    )
    signals = record_signals(sc)
    truth = ground_truth(sc, signals, tuple(sc.topology.services), sc.duration)
    affected = {a["service"]: a for a in truth["faults"][0]["affected"]}
    assert {"paymentservice", "checkoutservice", "frontend"} <= set(affected)
    assert not {"adservice", "recommendationservice", "redis-cart"} & set(affected)
    onsets = [affected[s]["onset"] for s in ("paymentservice", "checkoutservice", "frontend")]
    assert all(600 <= t < 700 for t in onsets)
