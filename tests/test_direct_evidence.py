"""Direct evidence before the RCA's ranking, and no automated action on indirect evidence
while users are fine (agents.deciding.analysis, agents.loop.operator)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.deciding.analysis import IncidentAnalyst
from agents.loop.operator import OperatorConfig
from agents.loop.telemetry_view import TelemetryView
from detectors.base import Alert
from twin.telemetry.frame import Frame


def _alert(t: float, service: str, signal: str) -> Alert:
    return Alert(t, service, signal, 5.0, "warning", "test")


class _RanksMidFirst:
    """A stand-in RCA that blames `mid` whatever the table says (as the random walk blames
    the store behind a crashed cache, whose load the fallbacks raised)."""

    name = "stand-in"

    def rank(self, table, anomaly_time, graph=None):
        from detectors.rca.base import Cause

        return [Cause("mid", 0.10), Cause("leaf", 0.09), Cause("entry", 0.01)]


def _fed_view(leaf_ready_after: float, until: int = 1500, leaf_desired_after: float = 2.0):
    """A chain view: 2 ready of 2 desired everywhere, `leaf` at `leaf_ready_after` ready of
    `leaf_desired_after` desired from t = 1200 on."""
    from conftest import chain_topology, make_scenario

    from twin.fields import N_SERVICE_METRICS, M

    sc = make_scenario(chain_topology())
    names = sc.topology.service_names
    view = TelemetryView(sc, names, 15.0)
    leaf = names.index("leaf")
    for t in range(0, until, 15):
        v = np.zeros((len(names), N_SERVICE_METRICS))
        v[:, M["arrival_rate"]] = 50.0
        v[:, M["ready_replicas"]] = v[:, M["desired_replicas"]] = 2.0
        if t >= 1200:
            v[leaf, M["ready_replicas"]] = leaf_ready_after
            v[leaf, M["desired_replicas"]] = leaf_desired_after
        view.observe(Frame(float(t), v, np.zeros((0, 4)), names, ()))
    return sc, view


def _incident_at_entry():
    from detectors.correlation import Incident

    alerts = [_alert(1230.0, "entry", "error_ratio"), _alert(1235.0, "mid", "arrival_rate")]
    return Incident(
        "inc-1", 1230.0, 1235.0, alerts=alerts, services={"entry", "mid"},
        signals={"error_ratio", "arrival_rate"}, detectors={"test"},
    )  # fmt: skip


def test_a_suspect_short_of_its_pods_goes_first_and_reads_availability():
    sc, view = _fed_view(leaf_ready_after=0.0)
    assert view.pods_missing("leaf", 1230.0) == 2 and view.pods_missing("mid", 1230.0) == 0
    analyst = IncidentAnalyst(_RanksMidFirst(), sc.topology.graph(), ["entry"])
    got = analyst.analyse(_incident_at_entry(), view)
    assert got.top_cause == "leaf" and got.causes[1][0] == "mid"
    assert got.causes[0][1] == pytest.approx(0.19)
    assert got.evidence["pods_missing"] == {"service": "leaf", "missing": 2, "rca_rank": 2}
    assert "availability" in got.signature and "traffic" not in got.signature
    assert got.cause_confidence == pytest.approx(0.19 / 0.29, abs=1e-3)


def test_pods_still_starting_or_all_ready_change_nothing():
    # all ready: the RCA's order stands
    sc, view = _fed_view(leaf_ready_after=2.0)
    analyst = IncidentAnalyst(_RanksMidFirst(), sc.topology.graph(), ["entry"])
    got = analyst.analyse(_incident_at_entry(), view)
    assert got.top_cause == "mid" and "pods_missing" not in got.evidence
    # a pod short for only the last 30 s is not missing yet (a restart, a pod starting)
    sc, view = _fed_view(leaf_ready_after=1.0, until=1245)
    assert view.pods_missing("leaf", 1230.0) == 0
    # a scale-out's new pods starting (4 desired, the 2 it had ready) are no loss
    sc, view = _fed_view(leaf_ready_after=2.0, leaf_desired_after=4.0)
    assert view.pods_missing("leaf", 1230.0) == 0
    got = IncidentAnalyst(_RanksMidFirst(), sc.topology.graph(), ["entry"]).analyse(
        _incident_at_entry(), view
    )
    assert got.top_cause == "mid"


@pytest.mark.parametrize("rolled_out_at, first", [(1100.0, "leaf"), (200.0, "mid")])
def test_a_suspect_rolled_out_shortly_before_the_incident_goes_first(rolled_out_at, first):
    sc, view = _fed_view(leaf_ready_after=2.0)
    view.note_events([{"kind": "deploy", "service": "leaf", "time": rolled_out_at}])
    analyst = IncidentAnalyst(_RanksMidFirst(), sc.topology.graph(), ["entry"])
    got = analyst.analyse(_incident_at_entry(), view)
    assert got.top_cause == first
    if first == "leaf":
        assert got.evidence["change"] == {"service": "leaf", "time": 1100.0, "rca_rank": 2}
        assert "deploy" in got.signature and got.cause_confidence >= 0.5
    else:  # 17 minutes before the incident opened: not a suspect change
        assert "change" not in got.evidence


def _view_with(evidence: dict, cause_kind: str = "service"):
    from agents.contracts import IncidentView

    return IncidentView(
        id="inc-1", opened=0.0, now=60.0, services=("mid",), signals=("latency_p99_ms",),
        detectors=("tiered",), n_alerts=1, top_cause="mid", cause_confidence=1.0,
        causes=(("mid", 0.01),), signature="latency", evidence=evidence, cause_kind=cause_kind,
    )  # fmt: skip


@pytest.mark.parametrize(
    "users_hit, evidence, cause_kind, held",
    [
        (False, {"callers": {}}, "service", True),  # an anomaly at one service, users fine
        (True, {"callers": {}}, "service", False),  # users hit: act
        (False, {"pods_missing": {"service": "mid"}}, "service", False),  # direct evidence
        (False, {"change": {"service": "mid"}}, "service", False),
        (False, {"retries": {"service": "mid"}}, "service", False),
        (False, {"node": {"node": "node-a1"}}, "node", False),
        (False, {"memory_near_limit": {"service": "mid", "share": 0.9}}, "service", False),
    ],
)
def test_no_automated_action_on_indirect_evidence_while_users_are_fine(
    users_hit, evidence, cause_kind, held
):
    from types import SimpleNamespace

    from agents.loop.operator import Operator

    tickets = []
    loop = SimpleNamespace(
        mode="ai",
        config=OperatorConfig(),
        _users_hit=lambda: users_hit,
        _ticket=lambda case, now, reason: tickets.append(reason) or True,
    )
    case = SimpleNamespace(view=_view_with(evidence, cause_kind))
    assert Operator._hold_without_impact(loop, case, 90.0, "auto: trusted") is held
    assert len(tickets) == int(held)
    off = SimpleNamespace(**{**vars(loop), "config": OperatorConfig(act_on_impact_only=False)})
    assert Operator._hold_without_impact(off, case, 90.0, "auto") is False


@pytest.mark.parametrize("memory_mb, near", [(240.0, True), (120.0, False)])
def test_memory_near_its_limit_at_the_top_cause_is_direct_evidence(memory_mb, near):
    from twin.fields import M

    sc, view = _fed_view(leaf_ready_after=2.0)
    mid = sc.topology.service_names.index("mid")
    view._frames[-1].values[mid, M["memory_mb"]] = memory_mb  # the latest scrape
    limit = sc.topology.services["mid"].memory_limit_mb
    assert view.memory_share("mid") == pytest.approx(memory_mb / limit)
    got = IncidentAnalyst(_RanksMidFirst(), sc.topology.graph(), ["entry"]).analyse(
        _incident_at_entry(), view
    )
    assert got.top_cause == "mid" and ("memory_near_limit" in got.evidence) is near
