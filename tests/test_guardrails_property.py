"""A property test that throws random action streams at the guardrails and recounts every
invariant they promise."""

from __future__ import annotations

import math
from typing import Any

from guardrail_fakes import DrainNode, FakeView
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents.safety.guardrail_config import (
    GuardrailConfig,
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
        # the batch form masks use says exactly what a check of each would (pending undos,
        # refusals, clamps and an open breaker included)
        candidates = [*data.draw(st.lists(actions(SERVICES), max_size=6)), *undos]
        assert g.permits(candidates, view) == [g.check(c, view).allowed for c in candidates]
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
