"""Guardrails: every limit with its reason, undo on worse health, the automation breaker."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from guardrail_fakes import DrainNode, FakeView, act, view4

from agents.contracts import SystemView
from agents.safety.guardrail_config import (
    GuardrailConfig,
    GuardrailError,
)
from agents.safety.guardrails import Guardrails
from twin.control.actions import (
    Escalate,
    Failover,
    ForceBreaker,
    NoOp,
    RestartPods,
    Rollback,
    ScaleTo,
    ShedLoad,
    StopFault,
)


def test_the_fake_view_is_a_system_view() -> None:
    assert isinstance(view4(), SystemView)


# -------------------------------------------------------------------------- pre-checks
def test_noop_and_escalate_always_allowed() -> None:
    g = Guardrails(GuardrailConfig(breaker_failures=1))
    g.record_outcome(False, 0.0)
    assert g.tripped
    for action in (NoOp(), Escalate("stuck"), Escalate("stuck", service="nowhere")):
        verdict = g.check(action, view4())
        assert verdict.allowed and verdict.action == action and not verdict.reasons


def test_unknown_service_refused() -> None:
    verdict = Guardrails().check(ForceBreaker("a", "zz", "open"), view4())
    assert not verdict.allowed and verdict.action is None
    assert verdict.reasons == ("force_breaker: unknown service 'zz'",)


def test_unknown_kind_refused_unless_allowed() -> None:
    verdict = Guardrails().check(DrainNode("a"), view4())
    assert not verdict.allowed
    assert "drain_node: unknown action kind" in verdict.reasons[0]
    g = Guardrails(GuardrailConfig(allow_kinds=("drain_node",), max_actions_per_service=1))
    assert act(g, view4(), DrainNode("a")).allowed
    again = g.check(DrainNode("a"), view4())
    assert not again.allowed and "rate limit on a" in again.reasons[0]  # checked generically


def test_restart_cut_to_share_limit() -> None:
    verdict = Guardrails().check(RestartPods("a"), view4())
    assert verdict.allowed and verdict.adjusted
    assert verdict.action == RestartPods("a", count=2)
    assert "would take 4 of 4 ready pods out; at most 2" in verdict.reasons[0]
    assert Guardrails().check(RestartPods("a", share=0.5), view4()).action == RestartPods(
        "a", share=0.5
    )


def test_restart_refused_without_clamp() -> None:
    verdict = Guardrails(GuardrailConfig(clamp=False)).check(RestartPods("a", count=3), view4())
    assert not verdict.allowed
    assert "restart_pods a: would take 3 of 4 ready pods out; at most 2" in verdict.reasons[0]
    assert verdict.reasons[0].endswith("scale out first or escalate")


def test_lone_healthy_replica_never_restarted() -> None:
    verdict = Guardrails().check(RestartPods("a"), view4(1))
    assert not verdict.allowed
    assert "would take 1 of 1 ready pods out; at most 0" in verdict.reasons[0]


def test_restart_keeps_min_ready() -> None:
    view = FakeView({"a": 4}, ready={"a": 2})  # two pods still starting
    verdict = Guardrails().check(RestartPods("a", share=0.5), view)
    assert verdict.action == RestartPods("a", count=1)  # 2 allowed by share, 1 must stay ready
    assert "min_replicas_after 1 ready" in verdict.reasons[0]


def test_restart_with_no_ready_pod_allowed() -> None:
    verdict = Guardrails().check(RestartPods("a"), FakeView({"a": 1}, ready={"a": 0}))
    assert verdict.allowed and not verdict.adjusted


@pytest.mark.parametrize(
    ("current", "target", "cut", "reason"),
    [
        (4, 20, 8, "4 -> 20 replicas is a step of 16 > max_scale_step 4: cut to 8"),
        (48, 51, 50, "48 -> 51 replicas is above max_replicas 50: cut to 50"),
        (4, 0, 1, "4 -> 0 replicas is below min_replicas_after 1: cut to 1"),
        (10, 1, 6, "10 -> 1 replicas is a step of 9 > max_scale_step 4: cut to 6"),
        (60, 58, None, ""),  # a scale-down above max_replicas is fine
        (3, 3, None, ""),
    ],
)
def test_scale_bounds(current: int, target: int, cut: int | None, reason: str) -> None:
    verdict = Guardrails().check(ScaleTo("a", target), FakeView({"a": current}))
    assert verdict.allowed
    if cut is None:
        assert not verdict.adjusted and not verdict.reasons
    else:
        assert verdict.action == ScaleTo("a", cut)
        assert verdict.reasons == (f"scale_to a: {reason}",)


def test_scale_refused_when_a_cut_would_void_it() -> None:
    verdict = Guardrails().check(ScaleTo("a", 0), FakeView({"a": 1}))
    assert not verdict.allowed
    assert verdict.reasons == ("scale_to a: 1 -> 0 replicas is below min_replicas_after 1",)
    off = Guardrails(GuardrailConfig(clamp=False)).check(ScaleTo("a", 9), FakeView({"a": 4}))
    assert not off.allowed and "a step of 5 > max_scale_step 4" in off.reasons[0]


def test_shed_and_failover_share_bounds() -> None:
    g = Guardrails()
    verdict = g.check(ShedLoad("a", 0.8), view4())
    assert verdict.action == ShedLoad("a", 0.5)
    assert verdict.reasons == ("shed_load a: share 0.8 is above max_shed_share 0.5: cut to 0.5",)
    assert g.check(Failover("a", 1.0), view4()).action == Failover("a", 1.0)
    strict = Guardrails(GuardrailConfig(max_failover_share=0.3, clamp=False))
    refused = strict.check(Failover("a", 0.6), view4())
    assert not refused.allowed
    assert refused.reasons == ("failover a: share 0.6 is above max_failover_share 0.3",)
    nothing = Guardrails(GuardrailConfig(max_shed_share=0.0)).check(ShedLoad("a", 0.2), view4())
    assert not nothing.allowed


def test_max_services_in_window() -> None:
    g, view = Guardrails(), view4()
    for s in ("a", "b", "c"):
        assert act(g, view, Rollback(s)).allowed
        view.advance(10)
    verdict = g.check(Rollback("d"), view)
    assert not verdict.allowed
    assert (
        "blast radius: would act on 4 services within 600 s (max_services 3" in verdict.reasons[0]
    )
    assert g.check(ScaleTo("a", 5), view).allowed  # a service already acted on
    view.advance(600 - 20)  # "a" leaves the window: now - 0 >= 600
    assert act(g, view, Rollback("d")).allowed


def test_per_service_rate_limit() -> None:
    g, view = Guardrails(), view4()
    assert act(g, view, ScaleTo("a", 5)).allowed
    view.advance(100)
    assert act(g, view, Rollback("a")).allowed
    view.advance(100)
    verdict = g.check(ScaleTo("a", 6), view)
    assert verdict.reasons == (
        "scale_to: rate limit on a: 2 actions in the last 300 s (max_actions_per_service 2)",
    )
    view.advance(100)  # the first action is 300 s old: out of the window
    assert g.check(ScaleTo("a", 6), view).allowed


def test_global_rate_limit_and_force_breaker_touches_both_ends() -> None:
    g, view = Guardrails(GuardrailConfig(max_actions=2, max_services=5)), view4()
    assert act(g, view, ForceBreaker("a", "b", "open")).allowed
    assert g.state()["recent"][0]["services"] == ["a", "b"]
    assert act(g, view, StopFault(0)).allowed  # names no service, still an action
    verdict = g.check(Rollback("c"), view)
    assert verdict.reasons == ("rollback: rate limit: 2 actions in the last 600 s (max_actions 2)",)


def test_every_reason_is_listed() -> None:
    g = Guardrails(GuardrailConfig(max_actions=1, max_services=1, clamp=False))
    view = view4()
    act(g, view, Rollback("a"))
    verdict = g.check(RestartPods("b"), view)
    assert len(verdict.reasons) == 3  # global rate, services, blast radius of the restart
    assert json.loads(json.dumps(verdict.to_dict()))["reasons"] == list(verdict.reasons)


def test_time_going_backwards_is_an_error() -> None:
    g = Guardrails()
    g.record(Rollback("a"), view4(now=100.0))
    with pytest.raises(GuardrailError, match="time went backwards"):
        g.record(Rollback("b"), view4(now=50.0))


# ------------------------------------------------------------------------- post-checks
def test_scale_undone_when_health_worsens() -> None:
    g, view = Guardrails(), view4()
    assert act(g, view, ScaleTo("a", 2)).allowed
    undo = g.post_check(ScaleTo("a", 2), 0.99, 0.80)
    assert undo == ScaleTo("a", 4)
    assert g.last_post_check is not None and g.last_post_check["worsened"]
    assert g.state()["failure_streak"] == 1


def test_no_undo_within_tolerance() -> None:
    g, view = Guardrails(), view4()
    act(g, view, ScaleTo("a", 2))
    assert g.post_check(ScaleTo("a", 2), 0.99, 0.95) is None
    assert g.state()["failure_streak"] == 0


def test_undo_prefers_the_apply_result() -> None:
    g, view = Guardrails(), view4()
    g.record(ScaleTo("a", 3), view, result={"replicas_from": 7})
    assert g.post_check(ScaleTo("a", 3), 1.0, 0.0) == ScaleTo("a", 7)
    g.record(ScaleTo("b", 3), view)  # never checked, no result: previous count unknown
    assert g.post_check(ScaleTo("b", 3), 1.0, 0.0) is None


def test_force_breaker_undo_restores_previous_state() -> None:
    g, view = Guardrails(), view4()
    act(g, view, ForceBreaker("a", "b", "open"))
    assert g.post_check(ForceBreaker("a", "b", "open"), 1.0, 0.5) == ForceBreaker("a", "b", "auto")
    view.advance(400)
    act(g, view, ForceBreaker("a", "b", "closed"))
    assert g.post_check(ForceBreaker("a", "b", "closed"), 1.0, 0.5) == ForceBreaker(
        "a", "b", "open"
    )


def test_share_undo_restores_previous_share() -> None:
    g, view = Guardrails(), view4()
    act(g, view, ShedLoad("a", 0.3))
    assert g.post_check(ShedLoad("a", 0.3), 1.0, 0.5) == ShedLoad("a", 0.0)
    act(g, view, Failover("b", 0.5))
    g.post_check(Failover("b", 0.5), 1.0, 1.0)
    view.advance(400)
    act(g, view, Failover("b", 1.0, shift_s=30.0))  # other tuning, same setting
    assert g.post_check(Failover("b", 1.0, shift_s=30.0), 1.0, 0.2) == Failover(
        "b", 0.5, shift_s=30.0
    )


def test_restart_and_rollback_have_no_undo_but_count_as_failures() -> None:
    g, view = Guardrails(), view4()
    act(g, view, RestartPods("a", count=1))
    act(g, view, Rollback("b"))
    assert g.post_check(RestartPods("a", count=1), 1.0, 0.1) is None
    assert g.post_check(Rollback("b"), 1.0, 0.1) is None
    assert g.state()["failure_streak"] == 2


def test_undo_is_exempt_from_limits_and_breaker_and_not_counted() -> None:
    g = Guardrails(GuardrailConfig(breaker_failures=1, max_actions_per_service=1))
    view = view4()
    act(g, view, ScaleTo("a", 2))
    undo = g.post_check(ScaleTo("a", 2), 1.0, 0.0)
    assert g.tripped and undo == ScaleTo("a", 4)
    verdict = g.check(undo, view)
    assert verdict.allowed and "undo of an action that worsened health" in verdict.reasons[0]
    view.apply(undo)
    g.record(undo, view)
    assert len(g.state()["recent"]) == 1  # the undo is not in the windows
    assert g.post_check(undo, 1.0, 0.0) is None  # never undone in turn, nor counted
    assert g.state()["failure_streak"] == 1
    assert g.state()["pending_undos"] == []
    assert not g.check(ScaleTo("a", 4), view).allowed  # no longer an undo: the breaker holds


def test_undo_recorded_without_a_check_is_not_counted() -> None:
    g, view = Guardrails(GuardrailConfig(max_actions_per_service=1)), view4()
    act(g, view, ShedLoad("a", 0.4))
    undo = g.post_check(ShedLoad("a", 0.4), 1.0, 0.5)
    assert undo == ShedLoad("a", 0.0)
    view.apply(undo)
    g.record(undo, view)
    assert [r["kind"] for r in g.state()["recent"]] == ["shed_load"]


def test_stale_undo_is_judged_as_a_new_action() -> None:
    g, view = Guardrails(GuardrailConfig(max_actions_per_service=1)), view4()
    act(g, view, ScaleTo("a", 3))
    undo = g.post_check(ScaleTo("a", 3), 1.0, 0.5)
    view.advance(299)
    assert g.check(undo, view).allowed
    view.advance(1)  # service_window_s after it was issued: stale, and a new action
    assert g.state()["pending_undos"] and g.check(undo, view).allowed
    assert g.state()["pending_undos"] == []
    view.apply(undo)
    g.record(undo, view)
    assert [r["time"] for r in g.state()["recent"]] == [0.0, 300.0]  # counted


def test_nan_health_is_no_judgement() -> None:
    g, view = Guardrails(), view4()
    act(g, view, ScaleTo("a", 2))
    assert g.post_check(ScaleTo("a", 2), math.nan, 0.1) is None
    assert g.state()["failure_streak"] == 0


# ---------------------------------------------------------------------------- breaker
def test_breaker_trips_after_k_consecutive_failures_and_pages() -> None:
    g, view = Guardrails(), view4()
    assert not g.record_outcome(False, 10.0)
    assert not g.record_outcome(False, 20.0)
    assert not g.record_outcome(True, 30.0)  # a success resets the count
    assert not g.record_outcome(False, 40.0)
    assert not g.record_outcome(False, 50.0)
    assert g.page_reason is None
    assert g.record_outcome(False, 60.0, what="restart_pods a")
    assert g.tripped
    assert g.page_reason == (
        "automation breaker tripped at t=60: 3 consecutive failed actions "
        "(last: restart_pods a); automation stopped, a human must look"
    )
    verdict = g.check(Rollback("a"), view)
    assert not verdict.allowed and verdict.reasons[0].startswith("automation breaker open: ")
    assert g.check(Escalate("breaker open"), view).allowed
    g.record_outcome(True, 70.0)
    assert g.tripped  # only a human re-arms it
    g.reset(80.0, by="alice")
    assert not g.tripped and g.page_reason is None
    assert g.state()["last_reset"] == {"time": 80.0, "by": "alice"}
    assert g.check(Rollback("a"), view).allowed


def test_breaker_in_window_mode_counts_failures_in_window() -> None:
    g = Guardrails(GuardrailConfig(breaker_failures=2, breaker_window_s=100))
    g.record_outcome(False, 0.0)
    g.record_outcome(True, 10.0)
    g.record_outcome(False, 150.0)  # the first failure left the window
    assert not g.tripped
    g.record_outcome(True, 160.0)  # successes do not reset in window mode
    g.record_outcome(False, 200.0)
    assert g.tripped
    assert "2 failed actions within 100 s" in (g.page_reason or "")


def test_post_checks_trip_the_breaker() -> None:
    g, view = Guardrails(GuardrailConfig(max_actions_per_service=5, max_actions=9)), view4()
    for _ in range(3):
        act(g, view, Rollback("a"))
        g.post_check(Rollback("a"), 1.0, 0.5, now=view.now)
        view.advance(1)
    assert g.tripped and "3 consecutive failed actions (last: rollback a)" in g.page_reason


def test_state_is_json_ready() -> None:
    g, view = Guardrails(), view4()
    act(g, view, ForceBreaker("a", "b", "open"))
    act(g, view, ScaleTo("c", 2))
    g.post_check(ScaleTo("c", 2), 1.0, 0.0)
    state = json.loads(json.dumps(g.state()))
    assert state["pending_undos"] == [{"action": "scale_to", "service": "c", "replicas": 4}]
    assert state["settings"] == [{"key": ["force_breaker", "a", "b"], "value": "open"}]


def test_determinism() -> None:
    def run() -> list[Any]:
        g, view, out = Guardrails(), view4(), []
        for i, s in enumerate("abcdeabcde"):
            out.append(act(g, view, RestartPods(s)).to_dict())
            view.advance(37 * i)
        return [*out, g.state()]

    assert run() == run()
