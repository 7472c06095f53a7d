"""Nodes and zones: placement, node faults, drains, node metrics, and RCA naming a node."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import Recorded, _Keep, chain_topology, make_scenario, topology_dict

from firebreak import cli
from twin.control.mechanisms import NODE_MONITOR_GRACE_S, NOT_READY_TOLERATION_S
from twin.control.remedy_actions import Drain, RolloutRestart
from twin.errors import ScenarioError
from twin.fields import NODE_METRICS
from twin.flow.engine import Simulation
from twin.run.runner import run_scenario
from twin.scenario.loader import load_scenario
from twin.telemetry.widecsv import write_wide_csv

INFRA = {"zones": 3, "nodes_per_zone": 2, "node_cpu": 4.0}


def chain(replicas: int = 3, **fields):
    topo = chain_topology()
    for svc in topo["services"].values():
        svc["replicas"] = replicas
    fields.setdefault("infrastructure", INFRA)
    fields.setdefault("duration", 900)
    return make_scenario(topo, **fields)


def placement(sim: Simulation) -> dict[str, list[str | None]]:
    return {
        d.name: [sim.pods.node_name(p) for p in d.pods if p.phase != "terminated"]
        for d in sim.pods.deployments
    }


def test_pods_spread_over_zones_and_never_overfill_a_node():
    sim = Simulation(chain())
    cluster = sim.cluster
    for dep in sim.pods.deployments:
        zones = [cluster.zone_of[p.node] for p in dep.pods]
        assert sorted(zones) == ["zone-a", "zone-b", "zone-c"], dep.name  # one per zone
    assert np.all(cluster.cpu_req <= cluster.cpu_alloc + 1e-9)
    assert np.all(cluster.mem_req <= cluster.mem_alloc + 1e-9)
    requested = sum(p.node >= 0 for d in sim.pods.deployments for p in d.pods) * 0.5
    assert cluster.cpu_req.sum() == pytest.approx(requested)


def test_a_pod_that_fits_nowhere_stays_pending_until_capacity_frees():
    tight = {"zones": 1, "nodes_per_zone": 2, "node_cpu": 4.0}
    sim = Simulation(chain(replicas=1, infrastructure=tight))  # 5 x 0.5 cores on 8 cores
    from twin.control.actions import ScaleTo

    sim.act(ScaleTo("leaf", 14))  # 7 cores for leaf, 6 left beside the others: 12 fit
    phases = [p.phase for p in sim.pods.deployments[sim.topo.names.index("leaf")].pods]
    assert phases.count("pending") == 2
    sim.act(ScaleTo("other", 0))  # frees 0.5 cores: one pending pod fits now
    phases = [p.phase for p in sim.pods.deployments[sim.topo.names.index("leaf")].pods]
    assert phases.count("pending") == 1


def test_a_drained_nodes_pods_restart_elsewhere():
    sim = Simulation(chain())
    node = sim.cluster.names[0]
    before = placement(sim)
    on_node = {s: nodes.count(node) for s, nodes in before.items() if node in nodes}
    assert on_node  # the node hosts something
    sim.advance(100.0)
    sim.act(Drain(node))
    after = placement(sim)
    assert all(node not in nodes for nodes in after.values())
    assert {s: len(n) for s, n in after.items()} == {s: len(n) for s, n in before.items()}
    assert sim.cluster.cordoned[0] and not sim.cluster.schedulable()[0]
    sim.advance(200.0)  # evicted pods went through their start-up delay elsewhere
    for dep in sim.pods.deployments:
        assert all(p.phase == "ready" and p.node != 0 for p in dep.pods)
    evicted = [e for e in sim.events.pending if e["kind"] == "pod_evicted"]
    assert len(evicted) == sum(on_node.values()) and all(e["node"] == node for e in evicted)


def test_a_down_node_fails_its_pods_then_loses_them_then_the_controller_evicts_them():
    fault = {"kind": "node_down", "target": "node-a1", "start": 100.0}
    keep = _Keep()
    sim = Simulation(chain(faults=[fault], duration=700), sinks=[keep])
    node = sim.cluster.node_index("node-a1")
    sim.advance(100.0 + NODE_MONITOR_GRACE_S / 2)
    on = [p for d in sim.pods.deployments for p in d.pods if p.node == node]
    assert on and all(p.phase == "ready" for p in on)  # still in the endpoints: failing
    sim.advance(100.0 + NODE_MONITOR_GRACE_S + 1)
    assert all(p.phase == "lost" for p in on)
    sim.advance(100.0 + NODE_MONITOR_GRACE_S + NOT_READY_TOLERATION_S + 30)
    assert all(p.node != node for p in on) and all(p.phase == "ready" for p in on)
    sim.run()
    run = Recorded(sim, keep.chunks)
    err = run.series("entry", "error_ratio")
    first = (run.times >= 101) & (run.times < 100 + NODE_MONITOR_GRACE_S)
    assert err[first].mean() > 0.01  # requests routed to the dead pods fail
    assert err[run.times > 600].mean() < 0.005


def test_restarting_pods_may_land_them_back_on_a_sick_node():
    """The scheduler does not know a noisy neighbour: a restarted pod goes where the spread
    rule puts it, often back onto the node it left."""
    back = 0
    for seed in range(6):
        fault = {"kind": "noisy_neighbour", "target": "node-a1", "start": 50.0}
        sim = Simulation(chain(faults=[fault], seed=seed))
        node = sim.cluster.node_index("node-a1")
        leaf = sim.pods.deployments[sim.topo.names.index("leaf")]
        if not any(p.node == node for p in leaf.pods):
            continue
        sim.advance(100.0)
        sim.act(RolloutRestart("leaf"))
        sim.advance(200.0)
        back += any(p.node == node for p in leaf.pods)
        assert 0 in sim.faults.active  # the node is as sick as before
    assert back >= 1


def test_node_metrics_reach_the_run_directory_and_the_rca_table(tmp_path):
    fault = {"kind": "noisy_neighbour", "target": "node-b1", "start": 300.0, "steal": 0.7}
    result = run_scenario(chain(faults=[fault], duration=600), tmp_path / "run")
    assert result.summary["status"] == "complete"
    nodes = pd.read_parquet(tmp_path / "run" / "node_metrics.parquet")
    assert set(nodes["metric"].astype(str)) == set(NODE_METRICS)
    assert set(nodes["node"].astype(str)) == {f"node-{z}{k}" for z in "abc" for k in (1, 2)}
    other = nodes[(nodes["node"] == "node-b1") & (nodes["metric"] == "cpu_other_cores")]
    assert other[other["time"] < 300]["value"].max() < 0.5
    assert other[other["time"] > 310]["value"].min() > 0.7 * 4.0 - 0.01
    wide = write_wide_csv(tmp_path / "run", tmp_path / "wide.csv")
    assert {"node-b1_cpu-other", "node-b1_notready", "node-b1_oom"} <= set(wide.columns)
    exported = tmp_path / "exported.csv"  # the export command writes the same table
    assert (
        cli.main(["export", str(tmp_path / "run"), "--format", "rcaeval", "-o", str(exported)]) == 0
    )
    assert list(pd.read_csv(exported, nrows=1).columns) == list(wide.columns)
    labels = json.loads((tmp_path / "run" / "labels.json").read_text())
    (f,) = labels["faults"]
    assert f["roots"] == ["node-b1", "zone-b"] and f["until_remedied"]
    assert [r["action"] for r in f["remedies"]["ends"]] == ["drain"]
    assert {"node": "zone-b"} in f["remedies"]["ends"][0]["aim"]
    assert "restart_pods" in [r["action"] for r in f["remedies"]["mitigates"]]


def test_the_rca_names_a_sick_node(tmp_path):
    """The analyst ranks the node under the incident's services as the cause."""
    from agents.deciding.analysis import IncidentAnalyst
    from agents.loop.telemetry_view import TelemetryView
    from detectors.correlation import Incident
    from detectors.rca.randomwalk import RandomWalkRca

    topo = topology_dict("online-boutique")
    raw = {"infrastructure": INFRA, "duration": 2400, "seed": 4}
    sc = make_scenario(topo, **raw)
    node = next(
        Simulation(sc).pods.node_name(p)
        for d in Simulation(sc).pods.deployments
        if d.name == "redis-cart"
        for p in d.pods
    )
    fault = {"kind": "noisy_neighbour", "target": node, "start": 1800.0, "steal": 0.8}
    sc = make_scenario(topo, faults=[fault], **raw)
    sim = Simulation(sc)
    view = TelemetryView(sc, sim.topo.names, sim.dt)
    for frame in sim.frames():
        view.observe(frame)
        if frame.time >= 1860.0:
            break
    incident = Incident(id="i", opened=1810.0, updated=1860.0)
    incident.services |= {"frontend", "cartservice"}
    entries = [c.entry for c in sc.workload.classes]
    got = IncidentAnalyst(RandomWalkRca(), sc.topology.graph(), entries).analyse(incident, view)
    assert got.top_cause == node and got.cause_kind == "node" and got.signature == "node"
    assert "cpu_other" in got.evidence["node"]["shows"]


def test_same_seed_same_bytes_with_infrastructure_and_node_faults():
    faults = [
        {"kind": "noisy_neighbour", "target": "node-a1", "start": 100.0},
        {"kind": "memory_pressure", "target": "node-b2", "start": 150.0, "oom_interval_s": 30},
        {"kind": "crash", "target": "leaf", "start": 120.0},
    ]
    runs = []
    for seed in (5, 5, 6):
        keep = _Keep()
        sim = Simulation(chain(faults=faults, seed=seed, duration=500), sinks=[keep])
        sim.schedule(RolloutRestart("leaf"), 200.0)
        sim.schedule(Drain("node-b2"), 250.0)
        sim.run()
        values = np.concatenate([c.values for c in keep.chunks])
        nodes = np.concatenate([c.node_values for c in keep.chunks])
        events = [e for c in keep.chunks for e in c.events]
        runs.append((values.tobytes(), nodes.tobytes(), json.dumps(events, sort_keys=True)))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_fork_with_infrastructure_continues_bit_for_bit():
    fault = {"kind": "nic_loss", "target": "node-c1", "start": 100.0, "loss": 0.2}
    keep_a, keep_b = _Keep(), _Keep()
    sim = Simulation(chain(faults=[fault], duration=400), sinks=[keep_a])
    sim.schedule(Drain("node-c1"), 180.0)
    sim.advance(150.0)
    child = sim.fork(sinks=[keep_b])
    sim.run()
    child.run()
    a = np.concatenate([c.node_values for c in keep_a.chunks])[-200:]
    b = np.concatenate([c.node_values for c in keep_b.chunks])[-200:]
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("faults", "infra", "message"),
    [
        (
            [{"kind": "node_down", "target": "node-a1", "start": 10}],
            None,
            "faults[0].kind: node_down needs the scenario's `infrastructure`",
        ),
        (
            [{"kind": "disk_pressure", "target": "node-q7", "start": 10}],
            INFRA,
            "faults[0].target: unknown node 'node-q7' (nodes: node-a1",
        ),
        (
            [{"kind": "zone_outage", "target": "zone-q", "start": 10}],
            INFRA,
            "faults[0].target: unknown zone 'zone-q' (zones: zone-a, zone-b, zone-c)",
        ),
        (
            [{"kind": "crash", "target": "leaf", "start": 10, "duration": "forever"}],
            INFRA,
            "not a duration: 'forever' (use e.g. 90s, 30m, 2h30m, 1d); or 'until-remedied'",
        ),
    ],
)
def test_infrastructure_errors_name_the_field(tmp_path, faults, infra, message):
    import yaml

    raw = {
        "name": "t",
        "topology": chain_topology(),
        "duration": 600,
        "workload": {"classes": [{"name": "all", "entry": "entry", "rate": 10}]},
        "faults": faults,
    }
    if infra is not None:
        raw["infrastructure"] = infra
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_until_remedied_is_spelled_out_or_left_out():
    a = chain(
        faults=[{"kind": "crash", "target": "leaf", "start": 10, "duration": "until-remedied"}]
    )
    b = chain(faults=[{"kind": "crash", "target": "leaf", "start": 10}])
    assert a.faults[0].duration is None and a.faults == b.faults and a.faults[0].until_remedied
