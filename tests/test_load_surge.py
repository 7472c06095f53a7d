"""A fault-free surge of users: scale-outs judged against the load, one page per surge."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import chain_topology, make_scenario
from guardrail_fakes import act, view4

from agents.loop.operator import Operator, OperatorConfig
from agents.loop.surge import SurgePages
from agents.loop.telemetry_view import TelemetryView
from agents.safety.guardrail_config import GuardrailConfig, GuardrailError
from agents.safety.guardrails import Guardrails
from twin.control.actions import ScaleTo
from twin.fields import N_SERVICE_METRICS, M
from twin.telemetry.frame import Frame

# ------------------------------------------------------------------- the post-check


def test_a_scale_out_is_not_undone_while_the_load_it_answered_stands_higher():
    g, view = Guardrails(), view4()
    act(g, view, ScaleTo("a", 6))
    assert g.post_check(ScaleTo("a", 6), 0.99, 0.40, 100.0, load_growth=2.0) is None
    assert g.last_post_check["explained_by_load"] and not g.last_post_check["worsened"]
    assert g.state()["failure_streak"] == 0


def test_a_scale_out_is_undone_when_health_fell_with_the_load_unchanged():
    g, view = Guardrails(), view4()
    act(g, view, ScaleTo("a", 6))
    growth = 1.0 + g.config.load_tolerance  # at the tolerance: unchanged
    assert g.post_check(ScaleTo("a", 6), 0.99, 0.40, 100.0, load_growth=growth) == ScaleTo("a", 4)
    assert g.state()["failure_streak"] == 1


def test_load_does_not_excuse_a_scale_in():
    g, view = Guardrails(), view4()
    act(g, view, ScaleTo("a", 2))  # takes capacity away: a surge makes it worse, not better
    assert g.post_check(ScaleTo("a", 2), 0.99, 0.40, 100.0, load_growth=3.0) == ScaleTo("a", 4)


def test_load_tolerance_is_validated():
    with pytest.raises(GuardrailError, match=r"guardrails.load_tolerance: must be"):
        GuardrailConfig(load_tolerance=-0.1)


# ----------------------------------------------------------------- the judgement


def _view(entry_rate, seconds: int) -> TelemetryView:
    """A chain topology's view fed `seconds` one-second frames, entry load entry_rate(t)."""
    sc = make_scenario(chain_topology())
    names = sc.topology.service_names
    view = TelemetryView(sc, names, 1.0)
    for t in range(seconds):
        feed(view, float(t), entry_rate(t))
    return view


def feed(view: TelemetryView, t: float, rate: float) -> None:
    v = np.zeros((len(view.names), N_SERVICE_METRICS))
    v[:, M["arrival_rate"]] = rate
    v[:, M["latency_p50_ms"]], v[:, M["latency_p95_ms"]], v[:, M["latency_p99_ms"]] = 5, 9, 12
    view.observe(Frame(t, v, np.zeros((0, 4)), view.names, ()))


class _Loop:
    """The operator's judging of automated actions, on a fed view and real guardrails."""

    def __init__(self, view: TelemetryView, healthy: bool) -> None:
        self.view = view
        self.config = OperatorConfig()
        self.guardrails = Guardrails()
        self.selector = SimpleNamespace(outcomes={})
        self.policy = None
        self.audit = None
        self.memory = None
        self.scheduled: list[float] = []
        self.undone: list = []
        self.pages: list[str] = []
        self.healthy = healthy

    _judge_auto = Operator._judge_auto
    _outcome = Operator._outcome

    def _worked(self, case, before, after, now) -> bool:
        return self.healthy

    def _at(self, case, when, fn) -> None:
        self.scheduled.append(when)
        self.next = fn

    def _act(self, action, by, case, now) -> float:
        self.undone.append(action)
        return now

    def _page(self, case, now, reason) -> None:
        self.pages.append(reason)

    def _ai_decide(self, case, now) -> None:
        self.pages.append("decided again")


def _judge(loop: _Loop, at: float) -> SimpleNamespace:
    case = SimpleNamespace(view=None, auto_attempts=1, state="auto")
    loop.guardrails.record(ScaleTo("mid", 6), view4(), result={"replicas_from": 2})
    loop._judge_auto(case, ScaleTo("mid", 6), 0.99, None, at)
    return case


def test_a_scale_out_is_kept_through_a_growing_burst_and_judged_once_it_passed():
    # users at 50/s, then from t=600 a burst growing to 150/s: the scale-out at t=610 is
    # judged at t=900 with health fallen (the burst saturates what it did not touch)
    view = _view(lambda t: 50.0 if t < 600 else 50.0 + min(t - 600, 300) / 3, 900)
    loop = _Loop(view, healthy=False)
    case = _judge(loop, at=610.0)
    assert loop.scheduled and not loop.undone and not loop.pages  # waits for the load
    assert case.state == "auto"
    # the burst passes: load back at 50/s, users fine again -> a success, nothing undone
    for t in range(900, 1100):
        feed(view, float(t), 50.0)
    loop.healthy = True
    loop.next()
    assert case.state == "resolved" and not loop.undone and not loop.pages


def test_a_scale_out_that_hurt_with_the_load_flat_is_undone_at_once():
    view = _view(lambda t: 50.0, 900)
    loop = _Loop(view, healthy=False)
    view_health = view.health
    view.health = lambda: 0.4  # fallen, with no more users than before
    _judge(loop, at=610.0)
    view.health = view_health
    assert not loop.scheduled and loop.undone == [ScaleTo("mid", 2)]


def test_the_wait_is_bounded():
    view = _view(lambda t: 50.0 if t < 600 else 150.0, 1400)  # the load never comes back
    loop = _Loop(view, healthy=False)
    _judge(loop, at=610.0)  # 790 s later: past load_judge_max_s, judged now
    assert not loop.scheduled and loop.pages == ["decided again"]
    assert not loop.undone  # health fell with the load: not the scale-out's doing


# ------------------------------------------------------------------------ paging


def test_one_page_for_one_surge_across_three_services():
    view = _view(lambda t: 50.0 if t < 3000 else 150.0, 3100)
    pages = SurgePages(view, window_s=600.0)
    assert pages.joins("inc-1", 3050.0) is None  # the surge's page
    assert pages.joins("inc-2", 3060.0) == "inc-1"
    assert pages.joins("inc-3", 3070.0) == "inc-1"
    assert pages.joins("inc-4", 3800.0) is None  # the same surge, much later: a new page


def test_without_a_surge_every_incident_pages():
    view = _view(lambda t: 50.0, 3100)
    pages = SurgePages(view, window_s=600.0)
    assert [pages.joins(f"inc-{i}", 3050.0 + i) for i in range(3)] == [None, None, None]


def test_the_operator_counts_one_page_for_a_surge_and_logs_the_others():
    view = _view(lambda t: 50.0 if t < 3000 else 150.0, 3100)
    logged = []
    loop = SimpleNamespace(
        mode="ai",
        pages=0,
        surge_pages=SurgePages(view, window_s=600.0),
        audit=SimpleNamespace(append=lambda kind, t, data: logged.append((kind, data))),
    )
    for i, incident_id in enumerate(("inc-1", "inc-2", "inc-3")):
        case = SimpleNamespace(incident=SimpleNamespace(id=incident_id))
        Operator._count_page(loop, case, 3050.0 + i)
    assert loop.pages == 1
    assert [d["joins"] for _, d in logged] == ["inc-1", "inc-1"]
    loop.mode = "traditional"  # the static-threshold stack pages every incident
    Operator._count_page(loop, SimpleNamespace(incident=SimpleNamespace(id="inc-4")), 3090.0)
    assert loop.pages == 2
