"""Production-like telemetry (`telemetry.mode: production`): what a Prometheus stack would
have recorded, seeded, never exactly constant, and still readable by detectors and RCA."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from firebreak.cli import main
from twin.run.runner import run_scenario
from twin.scenario.loader import load_scenario
from twin.scenario.observe_schema import DEFAULT_MODE
from twin.telemetry.longtable import read_long_table
from twin.telemetry.observe.pods import ALPHABET
from twin.telemetry.observe.writer import POD_METRICS
from twin.telemetry.spans import EPOCH_UNIX_S
from twin.telemetry.widecsv import write_wide_csv

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "scenarios" / "topologies" / "online-boutique.yaml"
FAULT_AT = 1500.0


def _scenario(tmp: Path, name: str, telemetry: dict, faults: list | None = None, seed: int = 3):
    doc = {
        "name": name,
        "topology": str(TOPOLOGY),
        "duration": "40m",
        "seed": seed,
        "workload": {
            "classes": [
                {"name": "browse", "entry": "frontend", "rate": 90},
                {"name": "checkout", "entry": "frontend", "rate": 10},
            ],
        },
        "faults": faults or [],
        "telemetry": {"plot": False, "traces": False, "logs": False, **telemetry},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(doc))
    return load_scenario(path)


BAD_DEPLOY = [
    {"kind": "bad_deploy", "target": "productcatalogservice", "start": FAULT_AT,
     "duration": "10m", "latency_factor": 4.0, "error_rate": 0.05},
]  # fmt: skip
CRASH = [{"kind": "crash", "target": "cartservice", "start": "10m", "duration": "5m", "share": 0.5}]
BUSY = {"deploys_per_day": 150, "batch_jobs_per_day": 150, "noisy_neighbours_per_day": 150}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A bad deploy observed in production mode; a crash with many confounders, twice with
    one seed, once with another, and once ideal."""
    tmp = tmp_path_factory.mktemp("production")
    default = {}  # a default run: production-like unless the scenario says otherwise
    busy = {"mode": "production", "production": {"confounders": BUSY}}
    plan = {
        "bad-deploy": _scenario(tmp, "bd", default, BAD_DEPLOY),
        "busy": _scenario(tmp, "busy", busy, CRASH),
        "busy-again": _scenario(tmp, "busy", busy, CRASH),
        "busy-seed-4": _scenario(tmp, "busy", busy, CRASH, seed=4),
        "busy-ideal": _scenario(tmp, "busy", {"mode": "ideal"}, CRASH),
    }
    out = {}
    for key, scenario in plan.items():
        out[key] = tmp / key
        run_scenario(scenario, out[key], labels=False)
    return out


def _wide(run: Path) -> pd.DataFrame:
    table = read_long_table(run).to_pandas()
    return table.pivot_table(index="time", columns=["service", "metric"], values="value")


def constant_windows(table: pd.DataFrame, times: np.ndarray, span: float) -> list:
    """Labels of the columns exactly constant over some window of `span` seconds."""
    bad = []
    for column in table.columns:
        v = table[column].to_numpy()
        ends = np.searchsorted(times, times + span, side="right")
        for i, j in enumerate(ends):
            if times[j - 1] - times[i] < span - 1e-9:
                break
            if np.all(v[i:j] == v[i]):
                bad.append(column)
                break
    return bad


def test_the_default_is_production_and_ideal_is_asked_for() -> None:
    """Real telemetry is never exact: a scenario that says nothing is observed as
    production; the theory checks ask for `ideal`."""
    assert DEFAULT_MODE == "production"
    scenario = load_scenario(ROOT / "scenarios" / "steady-state.yaml", duration=60)
    assert scenario.telemetry.mode == "production"


def test_no_exported_series_is_constant_over_any_ten_minutes(runs, tmp_path: Path) -> None:
    """Every column of the RCAEval export moves within every 10-minute window."""
    wide = write_wide_csv(runs["bad-deploy"], tmp_path / "data.csv")
    times = wide["time"].to_numpy(dtype=float)
    assert times[-1] - times[0] > 1800
    assert constant_windows(wide.drop(columns="time"), times, 600.0) == []
    # the check itself finds a constant column
    flat = wide.assign(x=1.0).drop(columns="time")
    assert constant_windows(flat, times, 600.0) == ["x"]


# integer gauges and counts of rare events that may rest at one value, as real ones do
MAY_REST = {"shed_rate", "queue", "in_flight", "ready_replicas", "desired_replicas"}


def test_every_continuous_metric_moves_within_ten_minutes(runs) -> None:
    """In metrics.parquet too: rates, latencies, CPU, memory, errors and utilisations."""
    wide = _wide(runs["bad-deploy"])
    flat = constant_windows(wide, wide.index.to_numpy(), 600.0)
    assert {metric for _, metric in flat} <= MAY_REST, flat


def test_metrics_sit_on_a_scrape_grid_and_keep_their_totals(runs) -> None:
    prod, ideal = _wide(runs["busy"]), _wide(runs["busy-ideal"])
    steps = np.diff(prod.index.to_numpy())
    assert np.all(steps == 15.0)
    edges = read_long_table(runs["busy"], "edge_metrics.parquet").to_pandas()
    assert np.array_equal(np.unique(edges["time"]), prod.index.to_numpy())  # one grid
    for svc in ("frontend", "cartservice", "productcatalogservice"):
        got = prod[(svc, "arrival_rate")].mean()
        want = ideal[(svc, "arrival_rate")].loc[prod.index[0] :].mean()
        assert got == pytest.approx(want, rel=0.05), svc
        # counter resets (crash, rollouts) never show as a burst of negative or huge rates
        assert prod[(svc, "arrival_rate")].min() >= 0
        assert prod[(svc, "arrival_rate")].max() < 2 * ideal[(svc, "arrival_rate")].max()


def test_quantiles_come_from_histogram_buckets(runs) -> None:
    """histogram_quantile puts the p50 inside the bucket that holds the true median."""
    prod, ideal = _wide(runs["busy"]), _wide(runs["busy-ideal"])
    bounds = np.array((0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000.0))
    for svc in ("frontend", "productcatalogservice"):
        true = ideal[(svc, "latency_p50_ms")].loc[prod.index[0] :].median()
        got = prod[(svc, "latency_p50_ms")].median()
        k = np.searchsorted(bounds, true)
        assert bounds[k - 1] <= got <= bounds[k], (svc, true, got)


def test_pods_are_named_like_kubernetes_pods(runs) -> None:
    info = json.loads((runs["busy"] / "telemetry.json").read_text())
    chars = re.escape(ALPHABET)
    pattern = re.compile(rf"^(?P<svc>[a-z-]+)-[{chars}]{{10}}-[{chars}]{{5}}$")
    per_service: dict[str, set[str]] = {}
    for pod, service in info["pods"].items():
        match = pattern.match(pod)
        assert match and match["svc"] == service, pod
        per_service.setdefault(service, set()).add(pod.rsplit("-", 2)[1])
    # unrelated rollouts made new ReplicaSets (a second hash) for some services
    assert any(len(hashes) > 1 for hashes in per_service.values())
    kinds = {c["kind"] for c in info["confounders"]}
    assert kinds == {"deploy", "batch_job", "noisy_neighbour"}
    pods = read_long_table(runs["busy"], "pod_metrics.parquet").to_pandas()
    assert set(pods["pod"].astype(str)) <= set(info["pods"])
    assert set(pods["metric"].astype(str)) == set(POD_METRICS)


def test_deterministic_per_seed(runs) -> None:
    a, b, c = (_wide(runs[k]) for k in ("busy", "busy-again", "busy-seed-4"))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    info = [json.loads((runs[k] / "telemetry.json").read_text()) for k in ("busy", "busy-again")]
    assert info[0] == info[1]


def test_rca_still_finds_the_bad_deploy(runs, tmp_path: Path, capsys) -> None:
    """The project's RCA reads the production export like any real table."""
    data = tmp_path / "data.csv"
    assert main(["export", str(runs["bad-deploy"]), "--format", "rcaeval", "-o", str(data)]) == 0
    at = str(int(EPOCH_UNIX_S + FAULT_AT))
    report = tmp_path / "rca.json"
    assert main(["rca", str(data), "--at", at, "--top", "3", "--json", str(report)]) == 0
    ranked = json.loads(report.read_text())
    names = [r["service"] for r in ranked["causes"]][:3]
    assert "productcatalogservice" in names, names


def test_background_errors_are_per_service_whatever_its_replicas(tmp_path: Path) -> None:
    """The declared rate of benign errors is per service: a 3-replica service shows as
    many as a 1-replica one (per pod, the frontend's own background errors alone sat at its
    99.9% objective's whole budget, and the loop's SLO burn alert fired with no fault)."""
    rate = 0.5
    scenario = _scenario(tmp_path, "bg", {"production": {"background_errors_per_s": rate}})
    run_scenario(scenario, tmp_path / "bg", labels=False)
    table = _wide(tmp_path / "bg")
    step = float(np.median(np.diff(table.index.to_numpy())))
    span = float(table.index[-1] - table.index[0]) + step
    replicas = table.xs("ready_replicas", axis=1, level="metric").median()
    errors = table.xs("error_rate", axis=1, level="metric").sum() * step / span
    many, one = replicas.idxmax(), replicas.idxmin()
    assert replicas[many] >= 3 and replicas[one] <= 2
    assert errors[many] == pytest.approx(rate, rel=0.25)
    assert errors[one] == pytest.approx(rate, rel=0.25)


def test_a_service_whose_pods_all_crash_reads_not_ready_and_serving_nothing(tmp_path) -> None:
    """kube-state-metrics reports 0 ready of 1 desired while the pods crash-loop, and the
    pods' own series are gone (0), not the last healthy scrape carried forward."""
    crash = [{"kind": "crash", "target": "redis-cart", "start": "10m", "duration": "10m",
              "share": 1.0}]  # fmt: skip
    scenario = _scenario(tmp_path, "dead", {}, crash)
    scenario = scenario.model_copy(update={"duration": 1500.0})
    run_scenario(scenario, tmp_path / "run", labels=False)
    redis = _wide(tmp_path / "run").xs("redis-cart", axis=1, level="service")
    down = redis.loc[660.0:1170.0]
    assert (down["ready_replicas"] == 0).all() and (down["desired_replicas"] == 1).all()
    for metric in ("arrival_rate", "throughput", "cpu_cores", "memory_mb"):
        assert (down[metric] == 0).all(), metric
    for window in (redis.loc[300.0:570.0], redis.loc[1320.0:]):
        assert (window["ready_replicas"] == 1).all()
        assert (window["arrival_rate"] > 0).all() and (window["memory_mb"] > 0).all()
