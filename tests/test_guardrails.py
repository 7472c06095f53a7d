"""Guardrails: every limit with its reason, undo on worse health, the automation breaker, and a
property test that throws random action streams at them and recounts every invariant."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents.contracts import SystemView
from agents.safety.guardrails import (
    GuardrailConfig,
    GuardrailError,
    Guardrails,
    load_guardrail_config,
)
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
from twin.errors import FirebreakError


# a kind the guardrails do not know: handled by kind and fields, never registered in twin
@dataclass(frozen=True)
class DrainNode:
    kind: ClassVar[str] = "drain_node"
    service: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, **dataclasses.asdict(self)}


class FakeView:
    """A SystemView over plain dicts; `apply` changes it the way the twin would."""

    def __init__(
        self,
        replicas: dict[str, int],
        ready: dict[str, int] | None = None,
        now: float = 0.0,
        health: float = 1.0,
    ) -> None:
        self._replicas = dict(replicas)
        self._ready = dict(ready if ready is not None else replicas)
        self._now = now
        self._health = health

    @property
    def now(self) -> float:
        return self._now

    def services(self) -> tuple[str, ...]:
        return tuple(self._replicas)

    def replicas(self, service: str) -> int:
        return self._replicas[service]

    def ready(self, service: str) -> int:
        return self._ready[service]

    def health(self) -> float:
        return self._health

    def advance(self, dt: float) -> None:
        self._now += dt

    def settle(self, service: str) -> None:
        self._ready[service] = self._replicas[service]

    def apply(self, action: Any) -> int:
        """Apply; return the ready pods a restart took out (0 for everything else)."""
        if action.kind == "restart_pods":
            s = action.service
            live = max(self._replicas[s], self._ready[s])
            if action.count is not None:
                n = min(action.count, live)
            elif action.share is not None:
                n = min(math.ceil(action.share * live - 1e-9), live)
            else:
                n = live
            taken = min(n, self._ready[s])
            self._ready[s] -= taken
            return taken
        if action.kind == "scale_to":
            self._replicas[action.service] = action.replicas
            self._ready[action.service] = min(self._ready[action.service], action.replicas)
        return 0


def view4(n: int = 4, **kw: Any) -> FakeView:
    return FakeView({s: n for s in ("a", "b", "c", "d", "e")}, **kw)


def act(g: Guardrails, view: FakeView, action: Any) -> Any:
    """check, apply if allowed, record; return the verdict."""
    verdict = g.check(action, view)
    if verdict.allowed:
        view.apply(verdict.action)
        g.record(verdict.action, view)
    return verdict


def test_the_fake_view_is_a_system_view() -> None:
    assert isinstance(view4(), SystemView)


# ------------------------------------------------------------------------------ config
def test_config_defaults() -> None:
    cfg = GuardrailConfig()
    assert cfg.max_restart_share == 0.5
    assert (cfg.max_services, cfg.window_s) == (3, 600.0)
    assert (cfg.max_actions_per_service, cfg.service_window_s) == (2, 300.0)
    assert cfg.min_replicas_after == 1
    assert cfg.breaker_failures == 3 and cfg.breaker_window_s is None
    assert GuardrailConfig.from_mapping(None) == cfg
    assert GuardrailConfig.from_mapping(cfg.to_dict()) == cfg
    json.dumps(cfg.to_dict())


def test_config_from_mapping() -> None:
    cfg = GuardrailConfig.from_mapping(
        {"max_restart_share": 0.25, "breaker_window_s": 900, "allow_kinds": ["drain_node"]}
    )
    assert cfg.max_restart_share == 0.25
    assert cfg.breaker_window_s == 900
    assert cfg.allow_kinds == ("drain_node",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_restart_share": 1.5}, "guardrails.max_restart_share: must be a number in (0, 1]"),
        ({"max_restart_share": 0}, "guardrails.max_restart_share: must be a number in (0, 1]"),
        ({"max_services": 0}, "guardrails.max_services: must be an integer >= 1, got 0"),
        ({"max_services": 2.5}, "guardrails.max_services: must be an integer >= 1, got 2.5"),
        ({"max_services": True}, "guardrails.max_services: must be an integer >= 1, got True"),
        ({"window_s": -1}, "guardrails.window_s: must be a number > 0, got -1"),
        ({"window_s": math.inf}, "guardrails.window_s: must be a number > 0, got inf"),
        ({"breaker_window_s": 0}, "guardrails.breaker_window_s: must be a number > 0 or null"),
        ({"clamp": "yes"}, "guardrails.clamp: must be true or false, got 'yes'"),
        ({"allow_kinds": [1]}, "guardrails.allow_kinds: must be a list of action kind names"),
        ({"max_shed_share": -0.1}, "guardrails.max_shed_share: must be a number in [0, 1]"),
        ({"health_tolerance": 2}, "guardrails.health_tolerance: must be a number in [0, 1]"),
        ({"breaker_failures": 0}, "guardrails.breaker_failures: must be an integer >= 1"),
        ({"max_restrat_share": 0.3}, "guardrails.max_restrat_share: unknown field (fields: "),
        (
            {"min_replicas_after": 5, "max_replicas": 4},
            "guardrails.min_replicas_after: 5 is above max_replicas 4",
        ),
        ([1, 2], "guardrails: expected a mapping of fields, got [1, 2]"),
    ],
)
def test_config_errors_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(GuardrailError) as err:
        GuardrailConfig.from_mapping(data)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, FirebreakError)


def test_config_constructor_validates_too() -> None:
    with pytest.raises(GuardrailError, match=r"guardrails\.max_scale_step: must be an integer"):
        GuardrailConfig(max_scale_step=0)
    assert GuardrailConfig(allow_kinds=["x"]).allow_kinds == ("x",)  # type: ignore[arg-type]


def test_load_guardrail_config(tmp_path) -> None:
    plain = tmp_path / "g.yaml"
    plain.write_text("max_services: 2\nwindow_s: 120\n")
    assert load_guardrail_config(plain).max_services == 2
    nested = tmp_path / "n.yaml"
    nested.write_text("guardrails:\n  max_actions: 9\n")
    assert load_guardrail_config(nested).max_actions == 9
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_services: -3\n")
    with pytest.raises(GuardrailError, match=r"bad\.yaml: guardrails\.max_services: must be"):
        load_guardrail_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("max_services: [\n")
    with pytest.raises(GuardrailError, match="malformed YAML"):
        load_guardrail_config(broken)
    with pytest.raises(GuardrailError, match="file not found"):
        load_guardrail_config(tmp_path / "missing.yaml")


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


# ---------------------------------------------------------------------- property test
SERVICES = ("a", "b", "c", "d")


@st.composite
def configs(draw: st.DrawFn) -> GuardrailConfig:
    lo = draw(st.integers(0, 2))
    return GuardrailConfig(
        max_restart_share=draw(st.sampled_from([0.25, 0.34, 0.5, 1.0])),
        min_replicas_after=lo,
        max_scale_step=draw(st.integers(1, 4)),
        max_replicas=draw(st.integers(max(lo, 1), 8)),
        max_shed_share=draw(st.sampled_from([0.0, 0.3, 0.5])),
        max_failover_share=draw(st.sampled_from([0.5, 1.0])),
        max_services=draw(st.integers(1, 3)),
        max_actions=draw(st.integers(1, 6)),
        window_s=draw(st.sampled_from([60.0, 600.0])),
        max_actions_per_service=draw(st.integers(1, 3)),
        service_window_s=draw(st.sampled_from([30.0, 300.0])),
        breaker_failures=draw(st.integers(1, 4)),
        clamp=draw(st.booleans()),
    )


def actions(services: tuple[str, ...]) -> st.SearchStrategy[Any]:
    name = st.sampled_from((*services, "zz"))
    share = st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0])
    return st.one_of(
        st.builds(RestartPods, name),
        st.builds(RestartPods, name, share=share),
        st.builds(RestartPods, name, count=st.integers(1, 8)),
        st.builds(ScaleTo, name, st.integers(0, 12)),
        st.builds(Rollback, name),
        st.builds(ForceBreaker, name, name, st.sampled_from(["open", "closed", "auto"])),
        st.builds(StopFault, st.integers(0, 3)),
        st.just(NoOp()),
        st.builds(Failover, name, share),
        st.builds(ShedLoad, name, share),
        st.builds(Escalate, st.just("why"), name),
        st.builds(DrainNode, name),
    )


def _targets(action: Any) -> set[str]:
    return {getattr(action, f, None) for f in ("service", "entry", "source", "target")} - {None}


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), data=st.data())
def test_random_action_streams_never_break_a_guardrail(
    cfg: GuardrailConfig, data: st.DataObject
) -> None:
    replicas = {s: data.draw(st.integers(0, 6)) for s in SERVICES}
    ready = {s: data.draw(st.integers(0, r)) for s, r in replicas.items()}
    view = FakeView(replicas, ready)
    g = Guardrails(cfg)
    ledger: list[tuple[float, set[str]]] = []  # counted actions: time, services
    unchecked: list[Any] = []  # applied, not yet post-checked
    undos: list[Any] = []  # issued by post_check, not applied yet
    issued: dict[Any, float] = {}
    streak, tripped = 0, False

    def failure(failed: bool) -> None:
        nonlocal streak, tripped
        streak = streak + 1 if failed else 0
        tripped = tripped or streak >= cfg.breaker_failures

    steps = data.draw(st.lists(st.sampled_from("AAAAAOOPPTTRUU"), min_size=5, max_size=40))
    for step in steps:
        # an undo not applied within service_window_s goes stale: judged as a new action
        undos = [u for u in undos if view.now - issued[u] < cfg.service_window_s]
        if step == "A":
            proposed = data.draw(actions(SERVICES))
            if proposed in undos:  # a proposal equal to a pending undo is that undo
                undos.remove(proposed)
                undos.insert(0, proposed)
                step = "U"
        if step == "A":
            verdict = g.check(proposed, view)
            if not verdict.allowed:
                assert verdict.action is None and verdict.reasons
                continue
            action = verdict.action
            event(f"allowed {action.kind}{' (cut)' if verdict.adjusted else ''}")
            assert action.kind == proposed.kind and _targets(action) == _targets(proposed)
            assert _targets(action) <= set(SERVICES) or action.kind == "escalate"
            if action.kind in ("noop", "escalate"):
                continue
            assert not tripped, f"{action} applied while the breaker is open"
            assert action.kind != "drain_node"
            s = getattr(action, "service", None)
            before_r = view.replicas(s) if s in SERVICES else None
            before_ready = view.ready(s) if s in SERVICES else None
            taken = view.apply(action)
            g.record(action, view)
            unchecked.append(action)
            now, names = view.now, _targets(action)
            ledger.append((now, names))
            # blast radius of one action
            if action.kind == "restart_pods" and taken:
                live = max(before_r, before_ready)
                assert taken <= math.floor(cfg.max_restart_share * live + 1e-9)
                assert before_ready - taken >= cfg.min_replicas_after
            if action.kind == "scale_to":
                after = view.replicas(s)
                assert abs(after - before_r) <= cfg.max_scale_step
                assert after <= before_r or after <= cfg.max_replicas
                assert after >= before_r or after >= cfg.min_replicas_after
            if action.kind == "shed_load":
                assert action.share <= cfg.max_shed_share
            if action.kind == "failover":
                assert action.share <= cfg.max_failover_share
            # windows, recounted from the ledger
            recent = [n for t, n in ledger if now - t < cfg.window_s]
            assert len(recent) <= cfg.max_actions
            assert len(set().union(*recent)) <= cfg.max_services
            for name in names:
                per = [n for t, n in ledger if now - t < cfg.service_window_s and name in n]
                assert len(per) <= cfg.max_actions_per_service
        elif step == "O":
            failed = data.draw(st.sampled_from([True, True, False]))
            g.record_outcome(not failed, view.now)
            failure(failed)
        elif step == "P" and unchecked:
            action = unchecked.pop(0)
            before = data.draw(st.sampled_from([1.0, 0.9, 0.3]))
            after = data.draw(st.sampled_from([1.0, 0.87, 0.5, 0.0]))
            undo = g.post_check(action, before, after, now=view.now)
            failure(after < before - cfg.health_tolerance)
            if undo is not None:
                assert after < before - cfg.health_tolerance
                assert undo.kind == action.kind and _targets(undo) == _targets(action)
                undos.append(undo)
                issued[undo] = view.now
        elif step == "U" and undos:
            undo = undos[0]
            undos = [u for u in undos if u != undo]  # one applied undo settles its twins
            if data.draw(st.booleans()):  # checking an undo is optional
                verdict = g.check(undo, view)
                assert verdict.allowed and verdict.action == undo  # even while tripped
            event("undo applied" + (" while tripped" if tripped else ""))
            view.apply(undo)
            g.record(undo, view)
            assert g.post_check(undo, 1.0, 0.0) is None  # an undo is never judged
        elif step == "T":
            view.advance(data.draw(st.sampled_from([0, 1, 10, 45, 200, 400])))
            for s in SERVICES:
                if data.draw(st.booleans()):
                    view.settle(s)
        elif step == "R" and data.draw(st.integers(0, 3)) == 0:
            g.reset(view.now)
            streak, tripped = 0, False
        assert g.tripped == tripped
        if tripped:
            event("breaker open")
        assert (g.page_reason is not None) == tripped
