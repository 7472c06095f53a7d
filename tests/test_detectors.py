"""Tier-1 detectors, the static baseline, the tiered pipeline and detection on tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SCENARIOS, make_scenario, topology_dict

from detectors.anomaly.evaluation import evaluate, parse_labels
from detectors.anomaly.features import K, layout_for
from detectors.anomaly.pipeline import TieredPipeline
from detectors.anomaly.static import StaticThresholds
from detectors.anomaly.table import TableError, detect_table, read_table
from detectors.anomaly.tier1 import Ewma, RobustZ, Seasonal
from experiments.detection.suite import fit_tier2, normal_run, run_case
from twin.flow.engine import Simulation
from twin.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def stream(detector, X, *args):
    out = []
    for x in X:
        out.append(detector.score_one(x, *args) if args else detector.score_one(x))
        detector.learn_one(x, *args) if args else detector.learn_one(x)
    return np.array(out)


def test_robust_z_is_standard_on_noise_and_flags_a_step():
    rng = np.random.default_rng(0)
    X = rng.normal(10.0, 2.0, size=(3000, 50))
    X[2500:, 7] += 20.0  # a 10-sd step on one signal
    det = RobustZ(50, window=600, refresh=10, floor=1e-6)
    z = stream(det, X)[700:2500]
    # on Gaussian noise the robust z is close to standard normal (the median and MAD of a
    # 60-frame sample add a little spread: a t-like tail, still rare beyond 4.5)
    assert np.mean(np.abs(z) > 4.5) < 1e-3
    assert np.std(z) == pytest.approx(1.0, abs=0.1)
    det2 = RobustZ(50, window=600, refresh=10, floor=1e-6)
    z2 = stream(det2, X)
    assert z2[2505, 7] > 8 and np.abs(z2[2505, np.arange(50) != 7]).max() < 6


def test_ewma_adapts_to_a_lasting_level_shift():
    x = np.concatenate([np.full(1000, 1.0), np.full(3000, 3.0)])[:, None]
    x = x + np.random.default_rng(1).normal(0, 0.1, size=x.shape)
    z = stream(Ewma(1, half_life=100, floor=0.01), x)
    assert z[1001, 0] > 10  # the shift is news
    assert abs(z[-1, 0]) < 4  # and then the new normal


def test_seasonal_baseline_knows_the_daily_peak():
    """A daily cycle: after two days the evening peak is expected; a real surge is not."""
    day, bin_s, dt = 86400.0, 900.0, 60.0
    t = np.arange(0, 4 * day, dt)
    level = 1.0 + 0.5 * np.sin(2 * np.pi * t / day)
    noise = np.random.default_rng(2).normal(0, 0.02, size=len(t))
    x = (level + noise)[:, None]
    x[int(3.5 * day / dt) : int(3.5 * day / dt) + 30] += 0.5  # a surge on day 4
    det = Seasonal(1, bin_s=bin_s, floor=0.02)
    z = []
    for ti, xi in zip(t, x, strict=True):
        z.append(det.score_one(xi, ti, noise=np.array([0.02])))
        det.learn_one(xi, ti)
    assert z[0] is None  # silent before a day of history
    day3 = np.array([zz[0] for ti, zz in zip(t, z, strict=True) if 2 * day <= ti < 3 * day])
    assert np.abs(day3).max() < 6
    surge = z[int(3.5 * day / dt) + 5][0]
    assert surge > 10


def test_features_are_scale_free_per_service_layout():
    layout = layout_for(("a", "b"))
    values = np.zeros((2, 17))
    values[:, 8] = [9.0, 999.0]  # p99 ms
    x = layout.transform(values)
    assert x.shape == (2 * K,) and layout.names[0] == "a:latency_p99_ms"
    assert x[0] == pytest.approx(np.log1p(9.0)) and x[K] == pytest.approx(np.log1p(999.0))


def frames_of(scenario):
    sim = Simulation(scenario)
    return sim, list(sim.frames())


def run_pipeline(pipe, frames):
    alerts = []
    for fr in frames:
        alerts += pipe.process(fr.time, fr.values)
    return alerts


def test_pipeline_is_quiet_through_a_normal_day_cycle_and_fast_on_an_outage():
    steady = load_scenario(SCENARIOS / "steady-state.yaml", duration=8 * 3600)
    sim, frames = frames_of(steady)
    assert run_pipeline(TieredPipeline(sim.topo.names), frames) == []
    outage = load_scenario(SCENARIOS / "dependency-outage.yaml")
    sim, frames = frames_of(outage)
    alerts = run_pipeline(TieredPipeline(sim.topo.names), frames)
    start = outage.faults[0].start
    assert alerts and all(
        start <= a.time <= start + outage.faults[0].duration + 120 for a in alerts
    )
    first = {a.service: a.time for a in reversed(alerts)}
    assert first["redis-cart"] - start <= 10 and first["frontend"] - start <= 10


def test_a_lasting_doubling_of_traffic_does_not_cause_an_alert_storm():
    scenario = make_scenario(
        topology_dict("online-boutique"),
        duration=6 * 3600,
        workload={
            "classes": [{"name": "all", "entry": "frontend", "rate": 100}],
            "noise": 0.05,
            "flash_crowds": [
                {"start": 7200, "duration": 4 * 3600, "multiplier": 2.0, "ramp_s": 300}
            ],
        },
    )
    sim, frames = frames_of(scenario)
    alerts = run_pipeline(TieredPipeline(sim.topo.names), frames)
    # the change itself may page once per service and signal; then it is the new normal.
    # Later, a traffic excursion of several noise sd may still earn one warning: the flow
    # model feeds the arrival intensity straight into the CPU-quota wait (as the request
    # fidelity's CFS bucket does), so a +19% half-minute surge moves a CPU-bound p99
    assert len(alerts) <= 2 * len(sim.topo.names)
    late = [a for a in alerts if a.time > 7200 + 3600]
    assert len(late) <= 1 and all(a.severity == "warning" for a in late)


def test_static_thresholds_fire_after_their_for_duration():
    sc = load_scenario(SCENARIOS / "memory-leak.yaml")
    sim, frames = frames_of(sc)
    static = StaticThresholds.for_scenario(sc, sim.topo.names)
    alerts = run_pipeline(static, frames)
    # the leak kills pods faster than "memory > 90% for 2m" can fire (as with real rules);
    # the errors the kills cause do fire, once their condition has held for two minutes
    start = sc.faults[0].start
    assert alerts and min(a.time for a in alerts) >= start + 120
    assert {a.signal for a in alerts} == {"error_ratio"}


def test_tier2_runs_rarely_and_keeps_the_recall_of_running_always():
    sc = load_scenario(SCENARIOS / "bad-deploy.yaml", duration=7200)
    tier2 = fit_tier2([normal_run(sc, duration=5400)])
    result = run_case(sc, tier2)
    tiered, always = result.detectors["tiered"], result.detectors["tier2-always"]
    assert always["tier2_calls"] >= 5 * max(tiered["tier2_calls"], 1)
    assert tiered["alerts"]["recall"] >= 0.95 * always["alerts"]["recall"]
    assert tiered["alerts"]["recall"] == 1.0
    assert tiered["false_alerts_per_service_day"] <= 1.0


def test_evaluation_reads_only_the_scored_labels():
    """The suite's numbers come from labels the detectors never saw (a plain check that
    the scorer gives 0 recall to a silent detector and 1 to a perfect one)."""
    labels = {
        "faults": [
            {"id": "f", "kind": "latency", "target": "a", "start": 100, "end": 200, "affected": []}
        ]
    }
    faults = parse_labels(labels)
    silent = evaluate([], faults, n_services=2, duration_s=1000)
    assert silent.alerts.recall == 0.0


def write_table(path: Path, n: int = 1500) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(n) * 15.0 + 1_767_571_200
    a = rng.normal(100, 5, n)
    b = rng.normal(0.2, 0.01, n)
    a[1200:1230] += 200
    pd.DataFrame({"time": t, "cart_latency": a, "cart_cpu": b}).to_csv(path, index=False)


def test_detect_table_flags_the_spike_and_nothing_else(tmp_path):
    path = tmp_path / "t.csv"
    write_table(path)
    table = read_table(path)
    result = detect_table(table)
    assert [a.signal for a in result.alerts] == ["latency"]
    assert result.alerts[0].service == "cart" and result.alerts[0].time >= table.times[1200]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b\n1,2\n", "no time column"),
        ("time,b\nyesterday,1\n", "unreadable time"),
        ("time,b\n1,x\n2,y\n", "no numeric signal columns"),
    ],
)
def test_detect_table_errors_are_clear(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TableError, match=message):
        read_table(path)


def test_firebreak_detect_writes_scores_and_alerts(tmp_path):
    path = tmp_path / "t.csv"
    write_table(path)
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "firebreak.cli", "detect", str(path), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert alerts and alerts[0]["detector"] == "table.tier1"
    assert all(a["signal"] == "latency" for a in alerts)
    assert len(pd.read_csv(out / "scores.csv")) == 1500
    res = subprocess.run(
        [sys.executable, "-m", "firebreak.cli", "detect", str(tmp_path / "nope.csv"), "--out",
         str(tmp_path / "out2")], capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "no such file" in res.stderr


def test_detector_bench_pieces_run():
    from benchmarks.bench_detect import tier1_frame_ms

    assert 0 < tier1_frame_ms(n_signals=200, frames=300, window=200) < 1000


def test_a_tier2_model_learned_elsewhere_serves_an_unseen_topology():
    """Cold start: tier 2 fitted on Online Boutique only, scored on Sock Shop with a fault."""
    from experiments.detection.suite import base_scenario

    transfer = fit_tier2([base_scenario("online-boutique", 1.0, seed=3)])
    target = base_scenario("sock-shop", 1.5, seed=4)
    fault = {"kind": "latency", "target": "catalogue", "start": 3000, "duration": 900,
             "factor": 5.0}  # fmt: skip
    target = target.model_validate({**target.model_dump(by_alias=True), "faults": [fault]})
    result = run_case(target, transfer)
    tiered = result.detectors["tiered"]
    assert result.faults == 1 and tiered["alerts"]["detected"] == 1
    assert tiered["alerts"]["f1"] >= 0.8
    assert tiered["false_alerts_per_service_day"] <= 1.0


def test_the_static_error_rule_holds_only_where_requests_are_enough_to_judge():
    """`error_ratio > 5% for 2m and rate(requests) >= 1/s`: a 0.2 request/s service with
    one benign error a minute (a 10% ratio) does not page; a busy one at 10% does."""
    from detectors.anomaly.static import ERROR_RULE_MIN_RATE, Rule
    from twin.fields import N_SERVICE_METRICS, M

    rule = Rule("error_ratio", np.full(2, 0.05), 120.0, min_rate=ERROR_RULE_MIN_RATE)
    static = StaticThresholds(("quiet", "busy"), [rule])
    alerts = []
    for t in range(0, 300, 15):
        v = np.zeros((2, N_SERVICE_METRICS))
        v[:, M["error_ratio"]] = 0.10
        v[:, M["arrival_rate"]] = (0.2, 50.0)
        alerts += static.process(float(t), v)
    assert [(a.service, a.time) for a in alerts] == [("busy", 120.0)]
