"""Predictive scaling: ahead of steps the HPA cannot follow, never in its way otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from agents.scaling.predictive import LEVELS, PredictiveScaler, _exceedance, replicas_for_rate
from detectors.forecast.base import Forecast
from detectors.forecast.models import ForecastError
from detectors.forecast.profile import SeasonalProfile
from experiments.detection.suite import load_topology_dict
from twin.flow.engine import Simulation
from twin.scenario.schema import Scenario

SEASON = 1800.0  # a half-hour "day", so a test sees several seasons in a few hours


def _scenario(seed: int = 1, hours: float = 2.5, **workload) -> Scenario:
    wl = {"classes": [{"name": "shop", "entry": "frontend", "rate": 100.0}], "noise": 0.03}
    wl.update(workload)
    return Scenario.model_validate(
        {
            "name": "predictive-test",
            "topology": load_topology_dict("online-boutique"),
            "duration": hours * 3600.0,
            "tick": 5.0,
            "seed": seed,
            "workload": wl,
            "telemetry": {"traces": False, "logs": False, "plot": False},
        }
    )


def _sales(hours: float, ramp_s: float = 10.0) -> list[dict]:
    """A sale every half hour (lift 3 for 10 minutes): recurring, so its lift is learnable;
    opening in `ramp_s`, faster than the HPA reacts (about 35 s for frontend)."""
    n = int(hours * 3600 // SEASON)
    return [
        {
            "name": f"sale-{k}",
            "kind": "campaign",
            "start": k * SEASON + 930.0,
            "duration": 600.0,
            "lift": 3.0,
            "ramp_s": ramp_s,
        }
        for k in range(n)
    ]


def _profile() -> SeasonalProfile:
    return SeasonalProfile(
        season_s=SEASON, smooth_s=0.0, level_halflife_s=300.0, level_decay_s=900.0
    )


def _scaler(sim: Simulation, **kw) -> PredictiveScaler:
    kw.setdefault("forecaster_factory", _profile)
    return PredictiveScaler(sim, interval_s=60.0, min_history_s=SEASON, **kw)


def _replicas_over_time(sim: Simulation, scaler: PredictiveScaler | None) -> dict[float, int]:
    out = {}
    for frame in sim.frames():
        if scaler is not None:
            scaler.observe(frame)
        out[frame.time + sim.dt] = int(sim.pods.deployments[0].spec_replicas)
    return out


def test_capacity_model_hand_case() -> None:
    # CPU: 100 rps × 2 ms / (0.2 cores × 0.5) = 2; pool: 100 × 0.1 s / (4 × 0.5) = 5
    assert (
        replicas_for_rate(
            100.0, cpu_per_request_ms=2.0, cpu_limit=0.2, workers=4, holding_s=0.1, target=0.5
        )
        == 5
    )
    # CPU-bound: 300 rps × 1.8 ms / (0.2 × 0.7) = 3.86 -> 4
    assert (
        replicas_for_rate(
            300.0, cpu_per_request_ms=1.8, cpu_limit=0.2, workers=16, holding_s=0.01, target=0.7
        )
        == 4
    )
    assert (
        replicas_for_rate(0.0, cpu_per_request_ms=1.0, cpu_limit=0.2, workers=4, holding_s=0.1) == 1
    )


def _ladder(mean: float, uppers: list[float]) -> list[Forecast]:
    t = np.arange(2.0)
    return [
        Forecast(t, np.full(2, mean), np.zeros(2), np.full(2, up), lv)
        for lv, up in zip(LEVELS, uppers, strict=True)
    ]


def test_exceedance_reads_the_interval_ladder() -> None:
    uppers = [60.0, 80.0, 100.0, 120.0, 140.0, 160.0]  # levels 0.5 … 0.99
    assert _exceedance(_ladder(50.0, uppers), 2, 200.0) == pytest.approx(0.005)
    assert _exceedance(_ladder(50.0, uppers), 2, 110.0) == pytest.approx(0.05)  # 0.9 fits
    assert _exceedance(_ladder(50.0, uppers), 2, 55.0) == pytest.approx(0.5)  # only the mean
    assert _exceedance(_ladder(50.0, uppers), 2, 40.0) == 1.0


def test_scales_out_before_a_declared_step_the_hpa_cannot_follow() -> None:
    hours = 2.5
    scenario = _scenario(calendar=_sales(hours), hours=hours)
    sim = Simulation(scenario)
    scaler = _scaler(sim, services=["frontend"])
    predictive = _replicas_over_time(sim, scaler)
    hpa = _replicas_over_time(Simulation(scenario), None)
    late = [e.start for e in scenario.workload.calendar if e.start > 2 * SEASON]
    assert late
    for start in late:
        t = max(k for k in predictive if k <= start)  # the last tick before the sale opens
        assert predictive[t] > hpa[t], f"not scaled out before the sale at {start}"
        assert predictive[t] >= 2 * hpa[t]  # sized for the sale, not a nudge
    reasons = {e.get("reason") for e in scaler.log if e["what"] == "scale"}
    assert "forecast" in reasons
    assert any(e["what"] == "take_control" for e in scaler.log)
    assert any(e["what"] == "hand_back" for e in scaler.log)  # and lets go after it


def test_stays_out_where_the_hpa_keeps_up() -> None:
    # an afternoon's smooth rise to the evening peak, which the HPA follows: no step, no
    # take-over, so the run is the HPA's own, tick for tick
    shop = [{"name": "shop", "entry": "frontend", "rate": 180.0}]
    scenario = _scenario(hours=2.0, daily_amplitude=0.6, start_hour=14.0, classes=shop)
    sim = Simulation(scenario)
    scaler = _scaler(sim)
    predictive = _replicas_over_time(sim, scaler)
    hpa = _replicas_over_time(Simulation(scenario), None)
    assert len(set(hpa.values())) > 1  # the HPA did scale along
    assert not [e for e in scaler.log if e["what"] in ("take_control", "scale")]
    assert predictive == hpa


class _Stub:
    """A forecaster that predicts a fixed rate with a tight band, for the decision rules."""

    name = "stub"

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def learn_one(self, time, value, observed=True):
        return self

    def predict_levels(self, horizon, levels, events=()):
        z = np.full(horizon, self.rate)
        t = np.arange(horizon, dtype=float)
        return [Forecast(t, z, 0.9 * z, 1.1 * z, lv) for lv in levels]


def _warm(scaler: PredictiveScaler, sim: Simulation, seconds: float) -> None:
    frames = sim.frames()
    for _ in range(int(seconds / sim.dt)):
        scaler.observe(next(frames))


def test_a_forecast_surge_alone_does_not_take_over_without_evidence_of_steps() -> None:
    sim = Simulation(_scenario(hours=1.2))
    scaler = _scaler(sim, services=["frontend"], forecaster_factory=lambda: _Stub(2000.0))
    _warm(scaler, sim, SEASON + 300.0)
    m = scaler.managed[0]
    assert m.last_outrun is None  # a steady 100 rps never outran the HPA
    assert not any(e["what"] == "take_control" for e in scaler.log)
    m.last_outrun = sim.now  # now it has been outrun: a predicted surge is worth acting on
    scaler._plan(m, sim.now)
    assert any(e["what"] == "take_control" for e in scaler.log)
    assert sim.hpa_paused[0] is True


def test_never_scales_in_on_a_forecast_alone() -> None:
    sim = Simulation(_scenario(hours=1.2))
    scaler = _scaler(sim, services=["frontend"], forecaster_factory=lambda: _Stub(1.0))
    _warm(scaler, sim, SEASON + 300.0)
    m = scaler.managed[0]
    from twin.control.actions import ScaleTo

    sim.act(ScaleTo(service="frontend", replicas=8))
    m.active, m.size_before = True, 3
    sim.hpa_paused[0] = True
    scaler._plan(m, sim.now)  # the forecast says almost nothing: need = min replicas
    frames = sim.frames()
    for _ in range(4):  # the HPA sees the load of 8 pods at ~100 rps: it wants fewer
        scaler.observe(next(frames))
    shrunk = sim.pods.deployments[0].spec_replicas
    assert shrunk < 8  # the HPA agreed, and the forecast let it shrink without waiting
    assert shrunk >= m.last_rec  # never below what the HPA itself recommends
    m.last_rec = 0
    m.hpa_recs.clear()
    m.hpa_recs.append((sim.now, 99))  # the HPA wants more: the forecast cannot veto that
    current = int(sim.pods.deployments[0].spec_replicas)
    assert min(max(99, m.forecast_need), 12) > current


def test_hands_back_when_the_forecaster_fails() -> None:
    class _Broken(_Stub):
        def predict_levels(self, horizon, levels, events=()):
            raise ForecastError("broken")

    sim = Simulation(_scenario(hours=1.2))
    scaler = _scaler(sim, services=["frontend"], forecaster_factory=lambda: _Broken(1.0))
    _warm(scaler, sim, 120.0)
    m = scaler.managed[0]
    m.active = True
    sim.hpa_paused[0] = True
    scaler._plan(m, sim.now)
    assert m.active is False and sim.hpa_paused[0] is False
    assert scaler.log[-1]["what"] == "fallback"


def test_deterministic() -> None:
    def once(seed: int):
        sim = Simulation(_scenario(seed=seed, hours=1.6, calendar=_sales(1.6)))
        scaler = _scaler(sim)
        scaler.run()
        return scaler.log, [(t, a) for t, a in sim.action_log]

    a, b = once(3), once(3)
    assert a == b
    assert a[0]  # it did act


def test_plans_hours_ahead() -> None:
    sim = Simulation(_scenario(hours=1.5, calendar=_sales(1.5)))
    scaler = _scaler(sim, lookahead_s=2 * SEASON, plan_always=True)
    scaler.run()
    assert scaler.plans, "the scaler never planned"
    plan = next(iter(scaler.plans.values()))
    steps = len(plan["upper_rate"])
    assert steps * plan["step_s"] >= 2 * SEASON
    assert len(plan["replicas"]) == steps and min(plan["replicas"]) >= 1
