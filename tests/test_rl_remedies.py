"""The remediation env on remediable faults: node and zone faults, drains, right remedy first.

Faults in the env are until-remedied: only their ending remedy (twin.control.mechanisms), a
human or the control plane's own eviction ends them. These tests check that a drain of the
node the node series show worst ends a node fault, that the episode's summary and the
evaluation score the first response against the oracle, that the reward charges a wrong
first response, and that the runbook agent drains sick nodes and zones.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.rl.envs import make_remediation
from agents.rl.evaluation import run_episode, summarise
from agents.rl.policies import RunbookPolicy, TriagePolicy
from twin.envs import ObservationLayout
from twin.envs.distribution import EnvConfigError, RemediationDistribution
from twin.envs.encoding import GF, SERVICE_FEATURES, SF
from twin.envs.nodes import NodeWatch
from twin.envs.remediation import GLOBAL_ACTIONS, action_index
from twin.fields import NODE_M, NODE_METRICS
from twin.scenario.infrastructure import Infrastructure

SHORT = {"episode_s": 600.0, "fault_start_s": (120.0, 150.0)}


def _healthy(n: int) -> np.ndarray:
    rows = np.zeros((n, len(NODE_METRICS)))
    rows[:, NODE_M["up"]] = rows[:, NODE_M["ready"]] = 1.0
    rows[:, NODE_M["cpu_other_cores"]] = 0.1
    return rows


def _run_to(env, t: float):
    obs = None
    while env.sim.now < t:
        obs, *_ = env.step(0)
    return obs


def test_node_watch_names_the_sick_node_and_a_zone_only_when_all_its_nodes_are_sick():
    watch = NodeWatch(Infrastructure(zones=3, nodes_per_zone=2), warmup=2)
    for _ in range(2):
        watch.update(_healthy(6))
    assert watch.badness.max() == 0.0
    sick = _healthy(6)
    sick[3, NODE_M["cpu_other_cores"]] = 2.5  # 60% of a 4-core node stolen
    watch.update(sick)
    assert watch.worst_node() == ("node-b2", pytest.approx(0.6))
    assert watch.worst_zone()[1] == pytest.approx(0.0)
    sick[2, NODE_M["up"]] = sick[3, NODE_M["up"]] = 0.0
    watch.update(sick)
    assert watch.worst_zone() == ("zone-b", pytest.approx(1.0))
    watch.note_drain("zone-b")
    assert watch.worst_zone()[0] != "zone-b"
    assert watch.worst_node()[0] not in ("node-b1", "node-b2")


def test_node_watch_without_infrastructure_names_nothing():
    watch = NodeWatch(None, warmup=1)
    watch.update(None)
    assert watch.worst_node() == (None, 0.0)
    assert watch.worst_zone() == (None, 0.0)


@pytest.mark.parametrize("kind", ["node_down", "noisy_neighbour", "zone_outage"])
def test_draining_the_worst_node_or_zone_ends_the_fault_and_scores_right_first(kind):
    env = make_remediation(fault_kinds=(kind,), topologies=("online-boutique",), **SHORT)
    env.reset(seed=5)
    start = env.scenario.faults[0].start
    obs = _run_to(env, start + 30.0)
    drain = "drain_zone" if kind == "zone_outage" else "drain_node"
    assert obs[GF["zone_worst" if kind == "zone_outage" else "node_worst"]] > 0.3
    assert env.action_masks()[GLOBAL_ACTIONS.index(drain)]
    _, _, _, _, info = env.step(GLOBAL_ACTIONS.index(drain))
    assert info["applied"] == "drain" and info["right_remedy"] is True
    assert not env.sim.faults.active  # the drain ended it
    done = False
    while not done:
        *_, terminated, truncated, info = env.step(0)
        done = terminated or truncated
    summary = info["firebreak"]
    assert summary["right_remedy_first"] is True
    assert summary["time_to_right_remedy_s"] == pytest.approx(env.sim.action_log[0][0] - start)


def test_a_wrong_first_response_is_scored_and_charged():
    kwargs = {"fault_kinds": ("crash",), "topologies": ("online-boutique",), **SHORT}
    rewards = {}
    for policy in ("wrong", "noop"):
        env = make_remediation(**kwargs)
        env.reset(seed=2)
        fault = env.scenario.faults[0]
        _run_to(env, fault.start + 20.0)
        env.nodes.badness[:] = 0.0  # drain the first node: never the right remedy for a crash
        action = GLOBAL_ACTIONS.index("drain_node") if policy == "wrong" else 0
        _, rewards[policy], _, _, info = env.step(action)
        if policy == "wrong":
            assert info["right_remedy"] is False
            assert env.remedies.summary()["right_remedy_first"] is False
    # the drain's own costs plus the wrong-first charge; the interval's SLO cost is alike
    assert rewards["wrong"] < rewards["noop"] - env.weights.wrong_first_remedy + 1e-9


def test_actions_before_the_fault_and_faults_nothing_ends_are_not_scored():
    env = make_remediation(fault_kinds=("crash",), topologies=("online-boutique",), **SHORT)
    env.reset(seed=2)
    restart = action_index("restart", 0, env.n_targets)
    _, _, _, _, info = env.step(restart)  # before the fault starts
    assert info["right_remedy"] is None and env.remedies.responses == 0
    leak = make_remediation(fault_kinds=("memory_leak",), topologies=("sock-shop",), **SHORT)
    leak.reset(seed=2)
    assert not leak.remedies.remediable
    _run_to(leak, leak.scenario.faults[0].start + 30.0)
    _, _, _, _, info = leak.step(restart)
    assert info["right_remedy"] is None


def test_node_faults_need_infrastructure_and_drains_are_masked_without_it():
    with pytest.raises(EnvConfigError, match="needs infrastructure"):
        RemediationDistribution(fault_kinds=("node_down",), infrastructure=False)
    env = make_remediation(infrastructure=False, **SHORT)
    assert not any(k in env.distribution.fault_kinds for k in ("node_down", "zone_outage"))
    env.reset(seed=0)
    mask = env.action_masks()
    assert not mask[GLOBAL_ACTIONS.index("drain_node")]
    assert not mask[GLOBAL_ACTIONS.index("drain_zone")]


def test_a_node_fault_episode_replays_identically():
    def episode() -> list:
        env = make_remediation(fault_kinds=("disk_pressure",), **SHORT)
        obs, _ = env.reset(seed=11)
        trace = [obs]
        for step in range(40):
            obs, reward, *_ = env.step(GLOBAL_ACTIONS.index("drain_node") if step == 20 else 0)
            trace += [obs, reward]
        return trace

    first, second = episode(), episode()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_the_runbook_agent_drains_sick_nodes_and_zones():
    layout = ObservationLayout("ranked", 5, None)
    rows = []
    for kind in ("node_down", "nic_loss", "zone_outage"):
        env = make_remediation(fault_kinds=(kind,), **SHORT)
        row = run_episode(env, RunbookPolicy(layout, env.decision_s), 7)
        row["policy"] = "runbook"
        rows.append(row)
        assert row["right_remedy_first"] is True, row
    entry = summarise(rows)[0]
    assert entry["right_remedy_first"] == 1.0 and entry["responded"] == 3


def test_summarise_counts_right_first_over_responded_remediable_episodes():
    rows = [
        {
            "policy": "p",
            "remediable": True,
            "responded": True,
            "right_remedy_first": True,
            "time_to_right_remedy_s": 20.0,
        },
        {
            "policy": "p",
            "remediable": True,
            "responded": True,
            "right_remedy_first": False,
            "time_to_right_remedy_s": 60.0,
        },
        {
            "policy": "p",
            "remediable": True,
            "responded": False,
            "right_remedy_first": None,
            "time_to_right_remedy_s": None,
        },
        {
            "policy": "p",
            "remediable": False,
            "responded": True,
            "right_remedy_first": None,
            "time_to_right_remedy_s": None,
        },
    ]
    entry = summarise(rows)[0]
    assert entry["remediable"] == 3 and entry["responded"] == 2
    assert entry["right_remedy_first"] == pytest.approx(0.5)
    assert entry["time_to_right_remedy_s"] == pytest.approx(40.0)
    assert entry["right_remedy_reached"] == 2


def test_a_fault_left_on_is_charged_each_interval_and_its_end_is_recorded():
    env = make_remediation(fault_kinds=("node_down",), topologies=("online-boutique",), **SHORT)
    env.reset(seed=5)
    start = env.scenario.faults[0].start
    _run_to(env, start + 20.0)
    minutes = env.decision_s / 60.0
    _, reward, *_ = env.step(0)
    assert reward <= -env.weights.unresolved_minute * minutes  # still on: charged
    assert env.remedies.resolved_after_s is None
    env.step(GLOBAL_ACTIONS.index("drain_node"))
    ended = env.remedies.resolved_after_s
    assert ended is not None and 0 < ended <= env.sim.now - start
    later = [env.step(0)[1] for _ in range(40)]
    # once ended nothing charges it: the SLO recovers and the cost falls far below the charge
    assert -later[-1] < 0.1 * env.weights.unresolved_minute * minutes


def test_the_first_right_remedy_is_paid_once():
    env = make_remediation(fault_kinds=("zone_outage",), topologies=("online-boutique",), **SHORT)
    env.reset(seed=5)
    _run_to(env, env.scenario.faults[0].start + 20.0)
    first = env.step(GLOBAL_ACTIONS.index("drain_zone"))[1]
    assert first > 0  # the bonus outweighs the drain's own costs and the interval's
    second = env.step(GLOBAL_ACTIONS.index("drain_node"))[1]
    assert second < 0  # the fault is over: no bonus, only the drain's costs


def test_the_triage_rule_drains_sick_nodes_rolls_back_services_then_waits():
    layout = ObservationLayout("ranked", 5, None)
    triage = TriagePolicy(layout, 10.0, settle_s=60.0)
    size = make_remediation(**SHORT).observation_space.shape[0]
    quiet = np.zeros(size, np.float32)
    assert triage.choice(quiet) == 0
    node = quiet.copy()
    node[GF["node_worst"]] = 0.5
    zone = node.copy()
    zone[GF["zone_worst"]] = 0.5
    assert triage.choice(node) == GLOBAL_ACTIONS.index("drain_node")
    assert triage.choice(zone) == GLOBAL_ACTIONS.index("drain_zone")
    service = quiet.copy()
    rows = layout.services(service[None])[0]  # a view: writes land in `service`
    assert rows.shape == (5, len(SERVICE_FEATURES))
    body = service[len(GF) : len(GF) + 5 * (len(SERVICE_FEATURES) + 1)].reshape(5, -1)
    body[:, -1] = 1.0  # every slot present
    body[2, SF["alert_errors"]] = 0.9
    body[2, SF["rca"]] = 0.8
    assert triage.choice(service) == action_index("rollback", 2, 5)
    mask = np.ones(triage.n_actions, bool)
    first, _ = triage.predict(service, episode_start=np.array([True]), action_masks=mask)
    assert first == action_index("rollback", 2, 5)
    waits = [triage.predict(service, action_masks=mask)[0] for _ in range(6)]
    assert waits == [0] * 6  # sits out ceil(60 s / 10 s) = 6 decisions, acts on the 7th
    assert triage.predict(service, action_masks=mask)[0] == first
    mask[first] = False
    assert triage.predict(service, episode_start=np.array([True]), action_masks=mask)[0] == 0


def test_cloning_the_triage_rule_makes_a_policy_that_acts_like_it():
    from sb3_contrib import MaskablePPO

    from agents.rl.warm_start import clone, demonstrations

    obs, actions, masks = demonstrations(lambda: make_remediation(**SHORT), "triage", 12, 0)
    assert len(obs) == 12 * 59  # 600 s episodes: the reset takes the first 10 s decision
    assert (actions != 0).any() and masks[np.arange(len(obs)), actions].all()
    model = MaskablePPO("MlpPolicy", make_remediation(**SHORT), seed=0, device="cpu")
    fit = clone(model, obs, actions, masks, epochs=30)
    assert fit["agreement"] > 0.9 and fit["samples"] == len(obs)
    assert 0.0 <= fit["acting_agreement"] <= 1.0  # over the teacher's remedies only
    acts = actions != 0
    assert fit["agreement"] >= fit["acting_agreement"] * acts.mean()


def test_the_default_passes_over_the_demonstrations_are_the_chosen_ones() -> None:
    from agents.rl.train import TrainConfig
    from agents.rl.warm_start import EPOCHS, clone

    assert TrainConfig.__dataclass_fields__["warm_epochs"].default == EPOCHS
    assert clone.__defaults__[0] == EPOCHS


def test_a_callees_traffic_change_does_not_take_the_blame_from_its_failing_caller():
    from twin.envs.encoding import FAMILIES, RobustZScorer, ServiceStatics

    statics = ServiceStatics(
        names=("caller", "callee"),
        cpu_limit=np.ones(2),
        memory_limit=np.ones(2),
        queue_limit=np.ones(2),
        replicas=np.ones(2),
        children=np.array([[0.0, 1.0], [0.0, 0.0]]),
        entries=(0,),
        entry_slo_ms=np.array([500.0]),
    )
    scorer = RobustZScorer(warmup=3)
    scorer.reset(statics)
    rng = np.random.default_rng(0)
    for _ in range(3):
        scorer.update(0.01 * rng.random((2, len(FAMILIES))))
    incident = np.zeros((2, len(FAMILIES)))
    incident[0, FAMILIES.index("errors")] = 0.5  # the caller fails
    incident[1, FAMILIES.index("traffic")] = 0.8  # so the callee sees less traffic
    alerts, rca = scorer.update(incident)
    assert alerts[1, FAMILIES.index("traffic")] == 1.0  # the callee alerts, two-sided
    assert rca[0] > rca[1]  # but the caller ranks first
    incident[1, FAMILIES.index("latency")] = 2.0  # a callee that is slow does explain it
    _, rca = scorer.update(incident)
    assert rca[1] > rca[0]


def test_demonstration_seeds_stay_below_every_evaluation_seed():
    from agents.rl.evaluation import EVAL_SEED_BASE
    from agents.rl.warm_start import DEMO_SEED_BASE, demo_seed

    seeds = [demo_seed(s, k) for s in (0, 80, 90, 130, 10_000) for k in (0, 199, 9_999)]
    assert all(DEMO_SEED_BASE <= x < EVAL_SEED_BASE for x in seeds)
    assert len({demo_seed(0, k) for k in range(300)}) == 300
