"""Predictive scaling: ahead of declared events, no forecast-only scale-in, fallback, study."""

from __future__ import annotations

import numpy as np
import pytest

from agents.scaling.predictive import PredictiveScaler, replicas_for_rate
from detectors.forecast.base import Forecast
from experiments.detection.suite import load_topology_dict
from twin.flow.engine import Simulation
from twin.scenario.schema import Scenario

SEASON = 1800.0


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


def _events(hours: float) -> list[dict]:
    """A sale every half hour (lift 3 for 10 minutes): recurring, so its lift is learnable."""
    n = int(hours * 3600 // SEASON)
    return [
        {
            "name": f"sale-{k}",
            "kind": "campaign",
            "start": k * SEASON + 900.0,
            "duration": 600.0,
            "lift": 3.0,
            "ramp_s": 30.0,
        }
        for k in range(n)
    ]


def _scaler(sim: Simulation, **kw) -> PredictiveScaler:
    return PredictiveScaler(sim, interval_s=60.0, margin_s=60.0, season_s=SEASON, **kw)


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


def test_scales_out_before_a_declared_recurring_event() -> None:
    hours = 2.5
    sim = Simulation(_scenario(calendar=_events(hours), hours=hours))
    scaler = _scaler(sim, services=["frontend"])
    replicas_at: dict[float, int] = {}
    starts = [e.start for e in scaler.events]
    startup = sim.scenario.topology.services["frontend"].startup_s
    for frame in sim.frames():
        scaler.observe(frame)
        replicas_at[frame.time + sim.dt] = int(sim.pods.deployments[0].spec_replicas)
    late = [s for s in starts if s > 2 * SEASON]  # after a season of history (warm-up)
    assert late
    for start in late:
        before = start - startup - sim.dt
        t = max(k for k in replicas_at if k <= before)
        assert replicas_at[t] > 3, f"not scaled out {startup} s before the sale at {start}"
    assert any(e["what"] == "scale" and e["reason"] == "forecast" for e in scaler.log)


class _Low:
    """A stub forecaster that always predicts almost no traffic."""

    name = "low"

    def fit(self, times, values, events=()):
        return self

    def predict(self, horizon, level=0.9, events=()):
        z = np.full(horizon, 1.0)
        return Forecast(np.arange(horizon, dtype=float), z, z, z, level)


def test_never_scales_in_on_forecast_alone() -> None:
    sim = Simulation(_scenario(hours=1.0))
    scaler = _scaler(sim, services=["frontend"], forecaster_factory=_Low)
    frames = sim.frames()
    for _ in range(int(2 * SEASON / sim.dt) // 2 + 1):
        scaler.observe(next(frames))
    m = scaler.managed[0]
    m.bins = [100.0] * (int(SEASON / 60) + 2)  # enough history to plan
    from twin.control.actions import ScaleTo

    sim.act(ScaleTo(service="frontend", replicas=6))
    t = sim.now
    m.hpa_recs.clear()
    m.hpa_recs.append((t, 6))  # the HPA disagrees: keep 6
    scaler._plan(m, t)
    assert sim.pods.deployments[0].spec_replicas == 6
    assert sim.hpa_paused[0] is True
    m.hpa_recs.clear()
    m.hpa_recs.append((t, 4))  # the HPA agrees to shrink: the forecast sizes it (min 3)
    scaler._plan(m, t)
    assert sim.pods.deployments[0].spec_replicas == 3


def test_falls_back_to_hpa_on_forecast_drift() -> None:
    hours = 1.6
    crowd = {"start": 2 * SEASON + 300.0, "duration": 1200.0, "multiplier": 3.0, "ramp_s": 30}
    sim = Simulation(_scenario(hours=hours, flash_crowds=[crowd]))
    scaler = _scaler(sim, services=["frontend"])
    saw_paused, unpaused_on_fallback = False, []
    for frame in sim.frames():
        n = len(scaler.log)
        scaler.observe(frame)
        saw_paused |= bool(sim.hpa_paused.get(0))
        if any(e["what"] == "fallback" for e in scaler.log[n:]):
            unpaused_on_fallback.append(sim.hpa_paused[0] is False)
    assert saw_paused
    falls = [e for e in scaler.log if e["what"] == "fallback"]
    assert falls and falls[0]["time"] >= crowd["start"]
    assert falls[0]["mape"] > scaler.mape_threshold
    assert unpaused_on_fallback and all(unpaused_on_fallback)  # the HPA runs it again


def test_deterministic() -> None:
    def once(seed: int):
        sim = Simulation(_scenario(seed=seed, hours=1.2, calendar=_events(1.2)))
        scaler = _scaler(sim)
        scaler.run()
        return scaler.log, [(t, a) for t, a in sim.action_log]

    a, b = once(3), once(3)
    assert a == b
    assert a[0]  # it did act


@pytest.mark.parametrize("family", ["calendar", "surge"])
def test_study_smoke(tmp_path, family) -> None:
    from experiments.capacity.study import run_study, summarise, targets

    table = run_study(seeds=2, families=(family,), days=0.05, tick=10.0)
    assert len(table) == 6 and set(table.policy) == {"hpa", "static", "predictive"}
    summary = summarise(table)
    assert {"ci_low", "ci_high", "diff_vs_hpa"} <= set(summary.columns)
    assert any("published claims" in line for line in targets(summary))


def test_study_command(tmp_path, capsys) -> None:
    from firebreak.cli import main

    out = tmp_path / "study"
    code = main(
        [
            "capacity-study",
            "--seeds",
            "2",
            "--days",
            "0.04",
            "--families",
            "daily",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert (out / "capacity_runs.csv").exists() and (out / "capacity_study.png").exists()
    assert "vs static peak" in capsys.readouterr().out


def test_study_scenarios_are_a_fair_test() -> None:
    from experiments.capacity.study import DAY_S, build_scenario

    cal = build_scenario("calendar", seed=4, days=3.0)
    services = cal.topology.services
    for name in ("redis-cart", "recommendationservice"):  # the study's topology patch
        assert services[name].hpa is not None
    assert load_topology_dict("online-boutique")["services"]["redis-cart"].get("hpa") is None
    sales = cal.workload.calendar
    assert len(sales) == 3
    hours = {round(e.start % DAY_S, 6) for e in sales}
    assert len(hours) == 1  # recurring: same hour every day, so the lift is learnable
    hpa = services["frontend"].hpa
    fastest = min(s.startup_s for s in services.values() if s.hpa is not None)
    for e in sales:
        assert e.ramp_s < hpa.sync_s + fastest  # faster than the reactive HPA can follow
        assert e.lift * (1 + cal.workload.daily_amplitude * 0.6) > 1 / (hpa.target_cpu * 0.5)
    daily = build_scenario("daily", seed=0, days=2.0)
    assert daily.workload.calendar == [] and daily.workload.flash_crowds == []


def test_plans_hours_ahead() -> None:
    sim = Simulation(_scenario(calendar=_events(2.5)))
    scaler = _scaler(sim, lookahead_s=2 * SEASON)
    scaler.run()
    assert scaler.plans, "the scaler never planned"
    plan = next(iter(scaler.plans.values()))
    steps = len(plan["upper_rate"])
    assert steps * plan["step_s"] >= 2 * SEASON
    assert len(plan["replicas"]) == steps and min(plan["replicas"]) >= 1
