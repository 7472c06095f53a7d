"""Faults end the way the mechanism table says: under their remedy, not under the others.

Every fault kind runs until remedied on a small chain with nodes and zones; each action kind
(aimed where the oracle would aim it) is applied, repeatedly where the remedy is uncertain;
the fault must end exactly when the action is one of its ending remedies. Also: nothing ends
an until-remedied fault on its own, a restart only mitigates a leak, the remedy odds hold
over seeds, blind forks never cure, and the whole thing is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import chain_topology, make_scenario

from twin.control.actions import (
    Failover,
    ForceBreaker,
    RestartPods,
    Rollback,
    ScaleTo,
    ShedLoad,
    action_from_dict,
)
from twin.control.mechanisms import MECHANISMS, oracle
from twin.control.remedy_actions import Drain, RolloutRestart, SetRetries
from twin.fields import M
from twin.flow.engine import Simulation
from twin.scenario.schema import FAULT_KINDS, INFRA_FAULT_KINDS

INFRA = {"zones": 3, "nodes_per_zone": 2, "node_cpu": 4.0}
START, FIRST, END = 60.0, 120.0, 600.0
TRIES = 8  # attempts of an uncertain remedy: (1 - 0.7) ** 8 < 1e-4 to miss by chance


def chain(**fields):
    topo = chain_topology()
    for svc in topo["services"].values():
        svc["replicas"] = 3
    fields.setdefault("infrastructure", INFRA)
    fields.setdefault("duration", END)
    return make_scenario(topo, **fields)


def leaf_node(seed: int = 1) -> str:
    """The node a leaf pod lands on at t = 0 (placement is a pure function of the seed)."""
    sim = Simulation(chain(seed=seed))
    pod = sim.pods.deployments[sim.topo.names.index("leaf")].pods[0]
    return sim.pods.node_name(pod)


PARAMS = {
    "latency": {"factor": 5.0},
    "errors": {"rate": 0.5},
    "cpu_hog": {"cores": 0.5},
    "memory_leak": {"mb_per_min": 20.0},
    "bad_deploy": {"error_rate": 0.3},
    "network_partition": {"peer": "mid"},
    "packet_loss": {"peer": "mid", "loss": 0.3},
    "misconfiguration": {"timeout_ms": 1.0},
    "retry_storm": {"retries": 5},
    "nic_loss": {"loss": 0.3},
}


def fault_spec(kind: str) -> dict:
    if kind == "zone_outage":
        target = "zone-a"
    elif kind in INFRA_FAULT_KINDS:
        target = leaf_node()
    else:
        target = "leaf"
    return {"kind": kind, "target": target, "start": START, **PARAMS.get(kind, {})}


def candidates(fault: dict) -> dict[str, object]:
    """One action of each remedy kind, aimed where the oracle aims it for this fault."""
    node = fault["target"] if fault["kind"] in INFRA_FAULT_KINDS else leaf_node()
    return {
        "restart_pods": RestartPods("leaf"),
        "rollout_restart": RolloutRestart("leaf"),
        "rollback": Rollback("leaf"),
        "drain": Drain(node),
        "set_retries": SetRetries("leaf", 0),
        "failover": Failover("leaf", 1.0),
        "scale_to": ScaleTo("leaf", 6),
        "shed_load": ShedLoad("entry", 0.3),
        "force_breaker": ForceBreaker("mid", "leaf", "open"),
    }


def ended(fault: dict, action: object, tries: int) -> tuple[bool, Simulation]:
    sim = Simulation(chain(faults=[fault]))
    for k in range(tries):
        sim.schedule(action, FIRST + 40.0 * k)  # type: ignore[arg-type]
    sim.run()
    return 0 not in sim.faults.active, sim


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_kind_ends_under_its_remedies_and_not_under_the_others(kind):
    fault = fault_spec(kind)
    ends = {r.action for r in MECHANISMS[kind].ending()}
    for name, action in candidates(fault).items():
        remedy = MECHANISMS[kind].remedy(name)
        uncertain = remedy is not None and remedy.effect == "ends" and remedy.p_success < 1.0
        done, _ = ended(fault, action, TRIES if uncertain else 1)
        assert done == (name in ends), (kind, name)


def test_every_kind_has_a_mechanism_and_an_oracle():
    assert set(MECHANISMS) == set(FAULT_KINDS)
    for kind, m in MECHANISMS.items():
        doc = oracle(kind, "leaf", peer="mid", zone="zone-a")
        assert doc["cause"] == m.cause and doc["mechanism"] and doc["on_its_own"]
        assert {r["action"] for r in doc["ends"]} == {r.action for r in m.ending()}
        for row in doc["ends"] + doc["mitigates"]:
            assert row["aim"] and 0.0 < row["p_success"] <= 1.0
    remediable = {k for k, m in MECHANISMS.items() if m.ending()}
    assert remediable == set(FAULT_KINDS) - {"memory_leak", "network_partition", "packet_loss"}


@pytest.mark.parametrize("kind", ["crash", "errors", "noisy_neighbour", "retry_storm"])
def test_until_remedied_faults_last_to_the_end_of_the_run_without_action(kind):
    sim = Simulation(chain(faults=[fault_spec(kind)], duration=900))
    sim.run()
    assert 0 in sim.faults.active
    assert not any(e["kind"] == "fault_end" for e in sim.events.pending)


def test_a_restart_only_mitigates_a_leak():
    leak = {"kind": "memory_leak", "target": "leaf", "start": START, "mb_per_min": 10.0}
    sim = Simulation(chain(faults=[leak], duration=900))
    sim.schedule(RolloutRestart("leaf"), 300.0)
    memory = []
    for frame in sim.frames():
        memory.append((frame.time, frame.values[sim.topo.names.index("leaf"), M["memory_mb"]]))
    t, mb = np.array(memory).T
    before = mb[(t > 290) & (t < 300)].mean()
    after = mb[(t > 360) & (t < 370)].mean()
    later = mb[(t > 800) & (t < 810)].mean()
    assert after < before - 30.0  # fresh heaps
    assert later > after + 60.0  # and the leak grows again (no OOM kill yet at this rate)
    assert 0 in sim.faults.active


def test_remedy_odds_hold_over_seeds():
    """One rolling restart ends a crash loop with the mechanism's p_success (per attempt)."""
    p = MECHANISMS["crash"].remedy("rollout_restart").p_success
    n, hits = 60, 0
    for seed in range(n):
        fault = {"kind": "crash", "target": "leaf", "start": START}
        sim = Simulation(chain(faults=[fault], seed=seed, duration=300, infrastructure=None))
        sim.schedule(RolloutRestart("leaf"), FIRST)
        sim.run()
        hits += 0 not in sim.faults.active
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(hits / n - p) < 3.5 * sd


def test_a_blind_fork_never_cures_but_a_plain_one_does():
    fault = {"kind": "errors", "target": "leaf", "start": START, "rate": 0.5}
    sim = Simulation(chain(faults=[fault]))
    sim.advance(FIRST)
    plain, blind = sim.fork(), sim.fork(blind=True)
    for child in (plain, blind):
        for k in range(TRIES):
            child.schedule(RolloutRestart("leaf"), FIRST + 1 + 40.0 * k)
        child.run()
    assert 0 not in plain.faults.active and 0 in blind.faults.active


def test_rollback_ends_a_bad_deploy_and_loses_no_feature_but_costs_one_elsewhere():
    bad = {"kind": "bad_deploy", "target": "leaf", "start": START, "error_rate": 0.3}
    _, sim = ended(bad, Rollback("leaf"), 1)
    assert not sim.pods.features_lost
    _, sim = ended(bad, Rollback("mid"), 1)
    assert 0 in sim.faults.active and sim.pods.features_lost


def test_actions_round_trip_and_refuse_bad_fields():
    for action in (Drain("node-a1"), RolloutRestart("leaf"), SetRetries("leaf", 2)):
        assert action_from_dict(action.to_dict()) == action
    with pytest.raises(Exception, match="set_retries: retries must be an integer in"):
        SetRetries("leaf", 50)
    with pytest.raises(Exception, match="drain: node must be a node or zone name"):
        Drain("")
    sim = Simulation(chain(infrastructure=None))
    with pytest.raises(Exception, match="drain: this run has no infrastructure"):
        sim.act(Drain("node-a1"))
    sim = Simulation(chain())
    with pytest.raises(Exception, match="drain: unknown node or zone 'node-z9'"):
        sim.act(Drain("node-z9"))
