"""The closed loop on production-like telemetry (`--telemetry production`): the operator reads
the run directory's production rows as they are recorded, never a scrape from its future,
and the same seed gives the same rehearsal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import experiments.rehearsal.run as rehearsal_run
from agents.loop.observed_feed import ObservedFeed
from experiments.observed import check_telemetry
from experiments.rehearsal.run import RehearsalError, StackSettings, rehearse
from twin.control.actions import ShedLoad
from twin.errors import FirebreakError
from twin.fields import SERVICE_METRICS
from twin.flow.engine import Simulation
from twin.scenario.loader import load_scenario
from twin.telemetry.observe import open_writer
from twin.telemetry.widecsv import read_cube

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "scenarios" / "topologies" / "online-boutique.yaml"
FAULT_AT = 1200.0
BAD_DEPLOY = {
    "kind": "bad_deploy",
    "target": "productcatalogservice",
    "start": FAULT_AT,
    "duration": "10m",
    "latency_factor": 4.0,
    "error_rate": 0.08,
}


def _scenario(tmp: Path, mode: str = "production", seed: int = 5):
    doc = {
        "name": "loop-production",
        "topology": str(TOPOLOGY),
        "duration": "35m",
        "seed": seed,
        "workload": {
            "classes": [
                {"name": "browse", "entry": "frontend", "rate": 90},
                {"name": "checkout", "entry": "frontend", "rate": 10},
            ],
        },
        "faults": [BAD_DEPLOY],
        "telemetry": {"plot": False, "traces": False, "logs": False, "mode": mode},
    }
    path = tmp / "loop-production.yaml"
    path.write_text(json.dumps(doc))
    return load_scenario(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The AI stack rehearsed twice on production telemetry (feeds kept), once on ideal."""
    tmp = tmp_path_factory.mktemp("loop-production")
    feeds: list[ObservedFeed] = []

    def keeping(sim):
        feed = ObservedFeed(sim, keep=True)
        feeds.append(feed)
        return feed

    patch = pytest.MonkeyPatch()
    patch.setattr(rehearsal_run, "ObservedFeed", keeping)
    try:
        sc = _scenario(tmp, mode="ideal")  # the loop's telemetry sets the run directory's
        out = {}
        for name, telemetry in (("a", "production"), ("b", "production"), ("ideal", "ideal")):
            result = rehearse(sc, "ai", tmp / name, settings=StackSettings(telemetry=telemetry))
            out[name] = (tmp / name, result.summary)
    finally:
        patch.undo()
    return {"runs": out, "feeds": feeds, "scenario": sc}


def test_the_operator_reads_exactly_the_rows_the_run_directory_records(runs) -> None:
    run_dir, _ = runs["runs"]["a"]
    feed = runs["feeds"][0]
    assert json.loads((run_dir / "telemetry.json").read_text())["mode"] == "production"
    times, services, metrics, cube = read_cube(run_dir / "metrics.parquet")
    seen = [f for _, f in feed.kept]
    assert len(seen) > 100
    steps = np.array([f.time for f in seen])
    assert np.allclose(np.diff(steps), feed.step_s)  # every step, once, in order
    row = {round(float(t), 6): i for i, t in enumerate(times)}
    s_idx = [list(services).index(s) for s in seen[0].services]
    m_idx = [list(metrics).index(m) for m in SERVICE_METRICS]
    for frame in seen:
        recorded = cube[row[round(frame.time, 6)]][np.ix_(s_idx, m_idx)]
        np.testing.assert_allclose(frame.values, recorded, rtol=1e-12, atol=1e-12)
    # the run directory holds nothing before the first step the operator saw, and only the
    # steps completed after the loop's last tick beyond its last one
    assert times[0] == pytest.approx(steps[0])
    assert len(times) - len(steps) <= 3


def test_no_step_reaches_the_operator_before_its_time(runs) -> None:
    feed = runs["feeds"][0]
    lags = np.array([handed - f.time for handed, f in feed.kept])
    assert (lags > 0).all()
    # the price of whole scrape rounds: at most an interval, the jitter twice, a hand-over
    assert lags.max() <= 2 * feed.step_s + 10.0


def test_an_action_at_t_changes_no_step_seen_by_t(tmp_path: Path) -> None:
    """Two runs, one with heavy shedding from T: every step at or before T is identical,
    so none of them used a tick (or a scrape) after T; later steps differ."""
    sc = _scenario(tmp_path)
    cut = 900.0
    kept = []
    for k, act in enumerate((False, True)):
        sim = Simulation(sc)
        names, edges = sim.topo.names, sim.topo.edges
        sim.sinks.append(open_writer(sc, tmp_path / f"run{k}", names, edges, sim.node_names))
        feed = ObservedFeed(sim, keep=True)
        for frame in sim.frames():
            feed.take()
            if act and frame.time == cut:
                sim.act(ShedLoad(entry="frontend", share=0.9, delay_s=0.0))
        kept.append(feed.kept)
    # every step up to T, those handed out after T included (their scrape rounds ended
    # after T): a rate() window ending at t used only scrapes ≤ t of ticks ≤ t
    before = [[(at, f) for at, f in run if f.time <= cut] for run in kept]
    assert len(before[0]) == len(before[1]) > 40
    assert any(at > cut + 1.0 for at, _ in before[1])
    for (_, a), (_, b) in zip(*before, strict=True):
        assert a.time == b.time and np.array_equal(a.values, b.values)
    after = [[f for at, f in run if at > cut + 60.0] for run in kept]
    assert any(not np.array_equal(a.values, b.values) for a, b in zip(*after, strict=False))


def test_same_seed_same_rehearsal(runs) -> None:
    (dir_a, a), (dir_b, b) = runs["runs"]["a"], runs["runs"]["b"]
    assert a["stacks"]["ai"] == b["stacks"]["ai"]
    assert (dir_a / "operations.json").read_bytes() == (dir_b / "operations.json").read_bytes()
    assert (dir_a / "metrics.parquet").exists()


def test_production_is_what_the_detectors_saw(runs) -> None:
    """The detectors' alerts sit on the 15 s step grid in production, not on the ticks; the
    SLO scoring stays on the twin's ground truth (both runs share the labels' faults)."""
    run_dir, summary = runs["runs"]["a"]
    ops = json.loads((run_dir / "operations.json").read_text())
    assert ops["incidents"], "the bad deploy opened no incident on production telemetry"
    feed = runs["feeds"][0]
    detected = [i["opened"] for i in ops["incidents"]]
    assert all(abs(t / feed.step_s - round(t / feed.step_s)) < 1e-6 for t in detected)
    ideal_dir, ideal = runs["runs"]["ideal"]
    assert summary["stacks"]["ai"]["faults_with_slo_impact"] is not None
    assert (
        json.loads((ideal_dir / "labels.json").read_text())["faults"]
        == json.loads((run_dir / "labels.json").read_text())["faults"]
    )
    assert summary["stacks"]["ai"] != ideal["stacks"]["ai"]


def test_bad_telemetry_choices_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FirebreakError, match=r"telemetry.*perfect"):
        check_telemetry("perfect")
    sc = _scenario(tmp_path)
    with pytest.raises(FirebreakError, match="telemetry"):
        rehearse(sc, "ai", tmp_path / "x", settings=StackSettings(telemetry="perfect"))
    with pytest.raises(RehearsalError, match="--telemetry"):
        rehearse(sc, "rl:somewhere", tmp_path / "y", settings=StackSettings(telemetry="production"))


def test_benign_rollouts_reach_the_operator_as_deploy_events(tmp_path: Path) -> None:
    """The writer's unrelated rollouts are rollouts to the cluster: the feed hands each out
    once, as a `deploy` event like a faulty release's, with the first step at or after it."""
    sc = _scenario(tmp_path)
    busy = {"confounders": {"deploys_per_day": 400.0}}
    telemetry = sc.telemetry.model_copy(
        update={"production": sc.telemetry.production.model_validate(busy)}
    )
    sc = sc.model_copy(update={"telemetry": telemetry})
    sim = Simulation(sc)
    writer = open_writer(sc, tmp_path / "run", sim.topo.names, sim.topo.edges, sim.node_names)
    sim.sinks.append(writer)
    feed = ObservedFeed(sim, keep=True)
    for _ in sim.frames():
        feed.take()
    drawn = sorted((round(c.start, 3), c.service) for c in writer.confounders if c.kind == "deploy")
    assert len(drawn) >= 5
    events = [(f.time, e) for _, f in feed.kept for e in f.events]
    assert all(set(e) == {"kind", "service", "time"} and e["kind"] == "deploy" for _, e in events)
    handed = sorted((e["time"], e["service"]) for _, e in events)
    last_step = feed.kept[-1][1].time
    assert handed == [d for d in drawn if d[0] <= last_step]
    assert all(e["time"] <= t < e["time"] + feed.step_s + 1e-6 for t, e in events)
