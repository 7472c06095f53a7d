"""`firebreak calibrate`: a runnable scenario from a folder of span CSVs and pod metric
CSVs in the Nezha layout, and its check against a held-out folder. Hand-made telemetry in
temporary folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments.calibration.fit import calibrate, idle_and_per_request
from firebreak.cli import main
from twin.scenario.loader import load_scenario
from twin.scenario.schema import Scenario

NS = 1_000_000_000
PODS = {
    "gateway": ["gateway-6f6cfc45b-h5m2n"],
    "api": ["api-866bd68c97-xcqfx", "api-866bd68c97-b2k9d"],
}


def _telemetry(root: Path, seed: int = 0, traces: int = 300, every_s: float = 2.0) -> Path:
    """gateway → api (about 12 ms of the api's own work) on two api pods, a trace every
    `every_s`, and a minute of metrics per pod: CPU 5 m idle + 8 m per request/s of a
    500 m limit, memory 400 Mi of 2,000 Mi."""
    rng = np.random.default_rng(seed)
    rows = [
        "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration"
    ]
    t0 = 1_674_982_159 * NS
    for i in range(traces):
        start = t0 + int(i * every_s * NS)
        api = int(rng.lognormal(np.log(12e6), 0.3))
        pod = PODS["api"][i % 2]
        gw = f"{i:032x}"
        rows.append(f"{gw},g{i},root,{PODS['gateway'][0]},/*,{start},{start + api + 3_000_000},0")
        rows.append(f"{gw},a{i},g{i},{pod},GET,{start + 1_000_000},{start + 1_000_000 + api},0")
    (root / "trace").mkdir(parents=True)
    (root / "trace" / "10_00_trace.csv").write_text("\n".join(rows) + "\n")
    (root / "metric").mkdir()
    head = (
        "Time,TimeStamp,PodName,CpuUsage(m),CpuUsageRate(%),MemoryUsage(Mi),"
        "MemoryUsageRate(%),PodWorkload(Ops)"
    )
    for pods in PODS.values():
        for pod in pods:
            lines = [head]
            for minute in range(10):
                load = 0.5 / len(pods) * (1 + 0.5 * rng.standard_normal())
                cpu = 5 + 8 * load
                lines.append(f"t,{minute * 60},{pod},{cpu},{cpu / 5},400,20,{load}")
            (root / "metric" / f"{pod}_metric.csv").write_text("\n".join(lines) + "\n")
    return root


def test_calibrated_scenario_takes_pods_limits_and_cpu_from_the_metrics(tmp_path: Path) -> None:
    scenario, summary = calibrate(_telemetry(tmp_path / "day"), name="shop")
    api = scenario["topology"]["services"]["api"]
    assert api["replicas"] == 2 and scenario["topology"]["services"]["gateway"]["replicas"] == 1
    assert api["cpu_limit"] == pytest.approx(0.5)
    assert api["memory_limit_mb"] == pytest.approx(2000) and api["memory_base_mb"] == 400
    assert api["service_time"]["mean_ms"] == pytest.approx(12.5, rel=0.1)
    # the slope of CPU on load (8 m per request/s = 8 ms a request), not the idle 5 m
    assert api["cpu_per_request_ms"] == pytest.approx(8.0, rel=0.05)
    assert api["cpu_idle_cores"] == pytest.approx(0.005, abs=0.001)
    assert summary["pods"] == 3
    assert scenario["workload"]["classes"] == [{"name": "gateway", "entry": "gateway", "rate": 0.5}]


def test_cpu_per_request_is_the_slope_or_the_ratio() -> None:
    load = np.array([1.0, 2.0, 3.0, 4.0])
    assert idle_and_per_request(0.01 + 0.002 * load, load) == pytest.approx((0.01, 2.0))
    flat = np.full(4, 2.0)  # no spread in load: the mean ratio
    assert idle_and_per_request(np.full(4, 0.004), flat) == pytest.approx((0.0, 2.0))


def test_calibrate_then_run_and_check(tmp_path: Path, capsys) -> None:
    fit, held_out = _telemetry(tmp_path / "dev"), _telemetry(tmp_path / "held", seed=1)
    out = tmp_path / "calibrated.yaml"
    assert main(["calibrate", str(fit), "-o", str(out), "--check", str(held_out)]) == 0
    text = capsys.readouterr().out
    assert "services above 1 req/s" in text and "api" in text
    scenario = load_scenario(out)
    assert scenario.topology.services["api"].replicas == 2
    assert main(["run", str(out), "--out", str(tmp_path / "run"), "--quiet", "--no-labels"]) == 0


def test_check_prints_the_persistence_baseline(tmp_path: Path, capsys) -> None:
    """The fitted period's own real figures are printed as a forecast of the held-out one:
    checked against itself every figure is exact, checked against a day with twice the
    latency every latency misses."""
    from experiments.calibration.check import compare, observed, verdict

    fit = _telemetry(tmp_path / "dev", every_s=0.5)  # 2 requests/s: above MIN_RATE
    same = verdict(compare(observed(fit)[0], observed(fit)[0]))
    assert same["services"] >= 1
    assert all(same[k]["within"] == same[k]["of"] > 0 for k in ("mean_ms", "p90_ms", "cpu"))
    assert same["cpu_all"]["within"] == same["cpu_all"]["of"] >= same["cpu"]["of"]
    assert same["mean_ms"]["median_abs_error"] == 0.0
    real = observed(fit)[0]
    slower = {s: dict(v, mean_ms=2 * v["mean_ms"], p90_ms=2 * v["p90_ms"]) for s, v in real.items()}
    shifted = verdict(compare(slower, real))
    assert shifted["mean_ms"]["within"] == 0 and shifted["p90_ms"]["within"] == 0
    assert shifted["mean_ms"]["median_abs_error"] == pytest.approx(0.5)
    assert main(["calibrate", str(fit), "-o", str(tmp_path / "c.yaml"), "--check", str(fit)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "mean latency within" in x)
    n = same["mean_ms"]["of"]
    assert line.rstrip().endswith(f"{n}/{n} (median |error| 0%)")


def test_cpu_is_compared_at_the_load_the_pods_recorded() -> None:
    """A trace minute 4x busier than the metrics' window puts the CPU comparison at a
    quarter of the traces' rate (the median across services, robust to one odd counter)."""
    from experiments.calibration.check import metric_window_scale

    real = {
        "a": {"rate": 2.0, "metric_rate": 0.5},
        "b": {"rate": 1.0, "metric_rate": 0.25},
        "c": {"rate": 1.0, "metric_rate": 3.0},  # an odd counter (a gateway's every op)
        "d": {"rate": 0.5, "metric_rate": float("nan")},
    }
    assert metric_window_scale(real) == pytest.approx(0.25)
    assert metric_window_scale({"a": {"rate": 1.0, "metric_rate": float("nan")}}) is None


def test_a_deployment_only_the_metrics_show_is_kept_idle(tmp_path: Path) -> None:
    """A pod the traces never reach (a cron job, an admin service) still runs and shows in
    every metric table, so it is a service of the twin: no calls, its idle CPU and memory."""
    root = _telemetry(tmp_path / "day")
    lines = ["Time,TimeStamp,PodName,CpuUsage(m),CpuUsageRate(%),MemoryUsage(Mi),"
             "MemoryUsageRate(%),PodWorkload(Ops)"]  # fmt: skip
    lines += [f"t,{m * 60},admin-7d9f8b6c5d-q2w5x,12,6,300,30,0" for m in range(10)]
    (root / "metric" / "admin-7d9f8b6c5d-q2w5x_metric.csv").write_text("\n".join(lines) + "\n")
    scenario, _ = calibrate(root, name="shop")
    admin = scenario["topology"]["services"]["admin"]
    assert admin["replicas"] == 1 and admin["memory_base_mb"] == 300
    assert admin["cpu_idle_cores"] == pytest.approx(0.012) and admin["cpu_per_request_ms"] == 0
    assert all("admin" not in (c["from"], c["to"]) for c in scenario["topology"]["calls"])
    Scenario.model_validate(scenario)  # valid as written


def test_cpu_stress_minutes_are_not_fitted_as_the_pods_own_use(tmp_path: Path) -> None:
    """A pod's metric file covering a day holds an injected stress (three minutes at 90% of
    its 500 m limit at no extra load): those minutes and the one either side are left out,
    so the pod's idle CPU stays what its quiet minutes show."""
    from experiments.calibration.fit import pod_metrics

    root = _telemetry(tmp_path / "day")
    pod = PODS["gateway"][0]
    path = root / "metric" / f"{pod}_metric.csv"
    head, *rows = path.read_text().splitlines()
    rows = [",".join(["t", str(600 + 60 * m), pod, "5", "1", "400", "20", "0"]) for m in range(20)]
    for m in (8, 9, 10):  # stress: 450 m of a 500 m limit
        rows[m] = ",".join(["t", str(600 + 60 * m), pod, "450", "90", "400", "20", "0"])
    path.write_text("\n".join([head, *rows]) + "\n")
    kept = pod_metrics(root)
    kept = kept[kept["pod"] == pod]
    assert len(kept) == 15 and kept["cpu"].max() == pytest.approx(0.005)
    assert sorted(kept["time"])[6:8] == [600 + 60 * 6, 600 + 60 * 12]  # 7 .. 11 left out
    scenario, _ = calibrate(root, name="shop")
    assert scenario["topology"]["services"]["gateway"]["cpu_idle_cores"] == pytest.approx(0.005)
