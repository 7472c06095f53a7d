"""Metrics exports: Prometheus/OpenMetrics exposition, the RCAEval wide CSV, `firebreak serve`
and `firebreak export`.

Runs are ten simulated minutes of a small chain with an error fault (for 500s) and a crash
(for 503s); the served runs last a few wall-clock seconds.

Over 500 lines because the three exposition formats and both commands are checked on the
same two runs.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import chain_topology, ideal, make_scenario, simulate
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from firebreak import cli
from twin.errors import FirebreakError
from twin.fields import EDGE_METRICS, SERVICE_METRICS, M
from twin.flow.engine import Simulation
from twin.run.runner import run_scenario
from twin.telemetry.exposition import (
    DEFAULT_BUCKETS,
    MIB,
    MetricsState,
    dist_from_quantiles,
    dist_from_values,
    normal_cdf,
    render,
    tick_dist,
)
from twin.telemetry.serve import serve_scenario
from twin.telemetry.spans import EPOCH_UNIX_S
from twin.telemetry.widecsv import RCAEVAL_METRICS, Z90, long_to_cube, read_cube, wide_from_long

ROOT = Path(__file__).resolve().parents[1]
STEADY = ROOT / "scenarios" / "steady-state.yaml"
SERVE = [sys.executable, "-m", "firebreak.cli", "serve"]
DURATION = 600.0
SNAP_EVERY = 25
STREAM_TICK = 0.5
FAULTS = [
    {"kind": "errors", "target": "leaf", "start": 200, "duration": 200, "rate": 0.3},
    {"kind": "crash", "target": "other", "start": 300, "duration": 120, "share": 1.0},
]


def scenario(duration: float = DURATION, tick: float = 1.0):
    """Observed ideally: the exports are checked tick for tick against the simulation."""
    return ideal(
        make_scenario(chain_topology(breaker=True), faults=FAULTS, duration=duration, tick=tick)
    )


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams: dict, family: str, sample: str | None = None) -> dict:
    """{frozen labels: value} of one family's samples (optionally one sample name)."""
    name = sample or family
    return {
        tuple(sorted(s.labels.items())): s.value for s in fams[family].samples if s.name == name
    }


# --- a streamed run: frames → MetricsState ------------------------------------------------
class Streamed:
    """Half-second ticks, so that a rate mistaken for a count shows."""

    def __init__(self) -> None:
        sim = Simulation(scenario(tick=STREAM_TICK))
        self.names, self.edges, self.dt = sim.topo.names, sim.topo.edges, sim.dt
        self.state = MetricsState(self.names, self.edges, self.dt)
        self.recovered = MetricsState(self.names, self.edges, self.dt)
        self.snaps, values, dists = [], [], []
        for frame in sim.frames():
            dist = tick_dist(sim)
            self.state.update_frame(frame, dist)
            self.recovered.update_frame(frame)
            values.append(frame.values)
            dists.append(dist)
            if len(values) % SNAP_EVERY == 0:
                self.snaps.append(self.state.snapshot())
        self.values, self.dists = np.array(values), np.array(dists)
        self.text = render(self.state).decode()
        self.fams = families(self.text)


@pytest.fixture(scope="module")
def streamed() -> Streamed:
    return Streamed()


def test_distribution_recovered_from_three_percentiles():
    rng = np.random.default_rng(7)
    mu = rng.uniform(-7.0, 1.0, 500)
    sigma = rng.uniform(0.01, 2.5, 500)
    shift = np.where(rng.random(500) < 0.5, 0.0, rng.uniform(0.0, 3.0, 500))
    q = [shift + np.exp(mu + z * sigma) for z in (0.0, 1.6448536269514722, 2.3263478740408408)]
    got = dist_from_quantiles(*q)
    assert np.allclose(got[:, 1], sigma, rtol=1e-6, atol=1e-8)
    assert np.allclose(np.exp(got[:, 0]), np.exp(mu), rtol=1e-6)
    assert np.allclose(got[:, 2], shift, atol=1e-7 * (1 + shift))
    # degenerate: all percentiles equal (a service that is down reports zeros)
    flat = dist_from_quantiles(np.zeros(3), np.zeros(3), np.zeros(3))
    assert np.all(np.isfinite(flat[:, 1:])) and np.all(flat[:, 1] == 0)


def test_normal_cdf_matches_erf():
    z = np.linspace(-8, 8, 1601)
    exact = np.array([0.5 * (1 + math.erf(x / math.sqrt(2))) for x in z])
    assert np.max(np.abs(normal_cdf(z) - exact)) < 2e-7
    assert normal_cdf(np.array([-np.inf, np.inf])).tolist() == [0.0, 1.0]


def test_exposition_parses_with_conventional_names_types_and_labels(streamed):
    fams = streamed.fams
    expected = {
        "http_server_requests": ("counter", {"service", "code"}),
        "http_server_request_duration_seconds": ("histogram", {"service"}),
        "http_server_active_requests": ("gauge", {"service"}),
        "container_cpu_usage_seconds": ("counter", {"namespace", "container"}),
        "container_memory_working_set_bytes": ("gauge", {"namespace", "container"}),
        "kube_deployment_status_replicas_ready": ("gauge", {"namespace", "deployment"}),
        "kube_deployment_spec_replicas": ("gauge", {"namespace", "deployment"}),
        "http_client_requests": ("counter", {"service", "peer_service"}),
        "http_client_request_failures": ("counter", {"service", "peer_service"}),
        "resilience4j_circuitbreaker_state": (
            "gauge",
            {"name", "service", "peer_service", "state"},
        ),
    }
    for name, (typ, labels) in expected.items():
        assert fams[name].type == typ, name
        for s in fams[name].samples:
            assert set(s.labels) - {"le", "quantile"} == labels, (name, s)
    # counters carry _total, units are base units in the name
    assert "http_server_requests_total{" in streamed.text
    assert "container_cpu_usage_seconds_total{" in streamed.text
    assert "# TYPE container_memory_working_set_bytes gauge" in streamed.text
    codes = {s.labels["code"] for s in fams["http_server_requests"].samples}
    assert codes == {"200", "500", "503"}
    assert {s.labels["service"] for s in fams["http_server_requests"].samples} == set(
        streamed.names
    )


def test_openmetrics_output_parses_with_units_and_eof(streamed):
    text = render(streamed.state, openmetrics_format=True).decode()
    assert text.endswith("# EOF\n")
    assert "# UNIT http_server_request_duration_seconds seconds" in text
    assert "# UNIT container_memory_working_set_bytes bytes" in text
    fams = {f.name: f for f in parse_openmetrics(text)}
    assert fams["http_server_request_duration_seconds"].type == "histogram"
    assert fams["http_server_requests"].type == "counter"


def test_counters_are_monotonic_across_frames(streamed):
    fields = ("requests", "bucket_counts", "duration_sum", "cpu_seconds")
    edge_fields = ("edge_attempts", "edge_failures", "edge_latency_sum")
    for before, after in itertools.pairwise(streamed.snaps):
        assert after.time > before.time
        for name in fields + edge_fields:
            assert np.all(getattr(after, name) >= getattr(before, name) - 1e-9), name
    last = streamed.snaps[-1]
    busy = [streamed.names.index(n) for n in ("entry", "mid", "leaf", "other")]
    assert np.all(last.requests[busy, 0] > 1000)
    # the faults show up: 500s at mid/leaf, 503s at the crashed service
    i_leaf, i_other = streamed.names.index("leaf"), streamed.names.index("other")
    assert last.requests[i_leaf, 1] > 100
    assert last.requests[i_other, 2] > 100


def test_histogram_is_cumulative_and_counts_the_served_requests(streamed):
    fams, dt = streamed.fams, streamed.dt
    hist = fams["http_server_request_duration_seconds"]
    requests = samples(fams, "http_server_requests", "http_server_requests_total")
    for i, svc in enumerate(streamed.names):
        rows = [s for s in hist.samples if s.labels.get("service") == svc]
        bucket = [(s.labels["le"], s.value) for s in rows if s.name.endswith("_bucket")]
        assert bucket[-1][0] == "+Inf"
        assert [float(le) for le, _ in bucket[:-1]] == list(DEFAULT_BUCKETS)
        counts = [v for _, v in bucket]
        assert all(b >= a - 1e-9 for a, b in itertools.pairwise(counts))
        (count,) = [s.value for s in rows if s.name.endswith("_count")]
        (total,) = [s.value for s in rows if s.name.endswith("_sum")]
        assert count == pytest.approx(counts[-1])
        served = sum(requests[(("code", c), ("service", svc))] for c in ("200", "500"))
        assert count == served and float(count).is_integer()
        # and the count is what the frames' throughput and error rate add up to (whole
        # requests: within two of the fractional sum)
        per_s = streamed.values[:, i, M["throughput"]] + streamed.values[:, i, M["error_rate"]]
        assert abs(count - per_s.sum() * dt) < 2.0
        # the mean from _sum/_count is the served-weighted mean latency of the frames
        mean_ms = streamed.values[:, i, M["latency_mean_ms"]]
        if count > 0:
            expect = (per_s * mean_ms).sum() / per_s.sum() / 1000.0
            assert total / count == pytest.approx(expect, rel=2.0 / count)
    # entry receives the workload's 50 requests/s: the count is throughput × time
    entry = streamed.names.index("entry")
    entry_count = streamed.state.snapshot().requests[entry, :2].sum()
    assert entry_count / DURATION == pytest.approx(50.0, rel=0.05)


def test_histogram_median_agrees_with_the_frames_p50(streamed):
    """Interpolating the buckets finds the median within the bucket around the frames' p50."""
    snap = streamed.state.snapshot()
    i = streamed.names.index("leaf")
    served = snap.requests[i, :2].sum()
    share = snap.bucket_counts[i] / served
    k = int(np.searchsorted(share, 0.5))
    lo = DEFAULT_BUCKETS[k - 1] if k > 0 else 0.0
    p50 = np.median(streamed.values[:200, i, M["latency_p50_ms"]]) / 1000.0  # before faults
    assert lo <= p50 * 1.5 and DEFAULT_BUCKETS[k] >= p50 / 1.5


def test_percentile_recovery_matches_the_engine_distribution(streamed):
    exact, recovered = streamed.state.snapshot(), streamed.recovered.snapshot()
    # equal but for the few requests lost by a crashed pod (a down service reports no
    # percentiles, so they fall in the first bucket): well under one request
    assert np.allclose(recovered.bucket_counts, exact.bucket_counts, rtol=1e-6, atol=0.5)
    up = streamed.values[:, :, M["latency_p50_ms"]] > 0
    got = dist_from_values(streamed.values)
    assert np.allclose(got[up][:, 1], streamed.dists[up][:, 1], rtol=1e-6, atol=1e-8)


def test_chunk_sink_and_frames_accumulate_the_same(streamed):
    state = MetricsState(streamed.names, streamed.edges, streamed.dt)
    sim = Simulation(scenario(tick=STREAM_TICK), sinks=[state])
    sim.run()
    a, b = state.snapshot(), streamed.state.snapshot()
    for name in ("requests", "bucket_counts", "duration_sum", "cpu_seconds", "edge_attempts"):
        assert np.allclose(getattr(a, name), getattr(b, name), rtol=1e-9), name


def test_gauges_breaker_one_hot_and_memory_bytes(streamed):
    fams = streamed.fams
    last = streamed.values[-1]
    mem = samples(fams, "container_memory_working_set_bytes")
    for i, svc in enumerate(streamed.names):
        key = (("container", svc), ("namespace", "default"))
        expect = last[i, M["memory_mb"]] * last[i, M["ready_replicas"]] * MIB
        assert mem[key] == pytest.approx(expect)
    states = fams["resilience4j_circuitbreaker_state"].samples
    for src, dst in streamed.edges:
        ones = [s.value for s in states if s.labels["name"] == f"{src}->{dst}"]
        assert sorted(ones) == [0.0] * 4 + [1.0]


def test_breaker_states_map_to_resilience4j_names():
    state = MetricsState(["a", "b"], [("a", "b")] * 5, 1.0)
    values = np.zeros((1, 2, len(SERVICE_METRICS)))
    edges = np.zeros((1, 5, len(EDGE_METRICS)))
    edges[0, :, EDGE_METRICS.index("breaker_state")] = [0, 1, 2, 3, 4]
    state.update(np.array([0.0]), values, edges)
    fams = families(render(state).decode())
    on = [s.labels["state"] for s in fams["resilience4j_circuitbreaker_state"].samples if s.value]
    assert on == ["closed", "open", "half_open", "disabled", "forced_open"]


def test_state_rejects_bad_shapes_and_buckets():
    with pytest.raises(ValueError, match="increasing"):
        MetricsState(["a"], [], 1.0, buckets=(0.1, 0.05))
    state = MetricsState(["a"], [], 1.0)
    with pytest.raises(ValueError, match="T ×"):
        state.update(np.zeros(1), np.zeros((1, 2, len(SERVICE_METRICS))), np.zeros((1, 0, 4)))


# --- the RCAEval wide CSV -----------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    run_scenario(scenario(), out, labels=False)
    return out


@pytest.fixture(scope="module")
def long_table(run_dir) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "metrics.parquet")


def test_wide_csv_columns_time_and_values(long_table):
    wide = wide_from_long(long_table)
    _, services, metrics, cube = long_to_cube(long_table)
    assert list(wide.columns) == ["time"] + [f"{s}_{m}" for s in services for m in RCAEVAL_METRICS]
    assert {c.split("_")[0] for c in wide.columns[1:]} == set(services)
    assert wide["time"].dtype.kind == "i"
    assert wide["time"].iloc[0] == EPOCH_UNIX_S
    assert set(np.diff(wide["time"])) == {1}
    assert len(wide) == int(DURATION)

    def long(svc: str, metric: str) -> np.ndarray:
        return cube[:, services.index(svc), metrics.index(metric)]

    for svc in services:
        assert np.array_equal(wide[f"{svc}_cpu"], long(svc, "cpu_cores"))
        assert np.allclose(wide[f"{svc}_mem"], long(svc, "memory_mb") * MIB)
        assert np.array_equal(wide[f"{svc}_workload"], long(svc, "arrival_rate"))
        assert np.allclose(wide[f"{svc}_latency-50"], long(svc, "latency_p50_ms") / 1000)
        errors = long(svc, "error_rate") + long(svc, "shed_rate")
        assert np.allclose(wide[f"{svc}_error"], errors)


def test_streamed_parquet_reader_equals_the_table_reader(run_dir, long_table):
    # small batches split ticks across batches and carry their own dictionaries
    streamed_cube = read_cube(run_dir, batch_rows=997)
    table_cube = long_to_cube(long_table)
    assert streamed_cube[1:3] == table_cube[1:3]
    assert np.array_equal(streamed_cube[0], table_cube[0])
    assert np.array_equal(streamed_cube[3], table_cube[3], equal_nan=True)
    with pytest.raises(FirebreakError, match="no such metrics table"):
        read_cube(run_dir / "missing")


def test_wide_csv_p90_is_the_ticks_distribution_percentile(long_table):
    rec = simulate(scenario())
    dist = np.concatenate([c.dist for c in _chunks(rec)])
    wide = wide_from_long(long_table)
    for i, svc in enumerate(rec.names):
        up = rec.values[:, i, M["latency_p50_ms"]] > 0
        mu, sigma, shift = dist[:, i, 0], dist[:, i, 1], dist[:, i, 2]
        p90 = shift + np.exp(mu + Z90 * sigma)
        got = wide[f"{svc}_latency-90"].to_numpy()
        assert np.allclose(got[up], p90[up], rtol=1e-6)
        p50, p95 = wide[f"{svc}_latency-50"].to_numpy(), rec.values[:, i, M["latency_p95_ms"]]
        assert np.all(got[up] >= p50[up]) and np.all(got[up] <= p95[up] / 1000 + 1e-12)


def _chunks(rec) -> list:
    """The chunks of a Recorded run (conftest keeps them on its sink)."""
    return next(s for s in rec.sim.sinks if hasattr(s, "chunks")).chunks


def test_wide_csv_resampled_to_15s_averages_each_window(long_table):
    native = wide_from_long(long_table)
    wide = wide_from_long(long_table, step=15)
    assert len(wide) == math.ceil(DURATION / 15)
    assert set(np.diff(wide["time"])) == {15}
    assert wide["time"].iloc[0] == EPOCH_UNIX_S
    col = "mid_workload"
    assert wide[col].iloc[3] == pytest.approx(native[col].iloc[45:60].mean())


def test_wide_csv_service_names_lose_underscores_and_collisions_fail():
    rows = [(t, svc, m, 1.0 + t) for t in (0.0, 1.0) for svc in ("cart_db", "front") for m in M]
    df = pd.DataFrame(rows, columns=["time", "service", "metric", "value"])
    wide = wide_from_long(df)
    assert "cart-db_cpu" in wide.columns and "front_latency-90" in wide.columns
    assert not any("_" in c.split("_", 1)[0] for c in wide.columns[1:])
    clash = df.replace({"service": {"front": "cart-db"}})
    with pytest.raises(FirebreakError, match="both become 'cart-db'"):
        wide_from_long(clash)
    with pytest.raises(FirebreakError, match="lacks metric"):
        wide_from_long(df[df.metric != "cpu_cores"])
    with pytest.raises(FirebreakError, match="shorter than the run's tick"):
        wide_from_long(df, step=0.5)


def test_export_command_writes_rcaeval_and_prometheus(run_dir, tmp_path, capsys):
    csv = tmp_path / "data.csv"
    assert cli.main(["export", str(run_dir), "--format", "rcaeval", "-o", str(csv)]) == 0
    back = pd.read_csv(csv)
    direct = wide_from_long(pd.read_parquet(run_dir / "metrics.parquet"))
    assert list(back.columns) == list(direct.columns)
    assert np.allclose(back.to_numpy(), direct.to_numpy(), rtol=1e-9)

    prom = tmp_path / "final.prom"
    assert cli.main(["export", str(run_dir), "--format", "prometheus", "-o", str(prom)]) == 0
    fams = families(prom.read_text())
    sim = Simulation(scenario())
    final = MetricsState(sim.topo.names, sim.topo.edges, sim.dt)
    sim.sinks.append(final)
    sim.run()
    got = samples(fams, "http_server_requests", "http_server_requests_total")
    for i, svc in enumerate(final.services):
        assert got[(("code", "200"), ("service", svc))] == math.floor(final.requests[i, 0])
    assert samples(fams, "http_client_requests", "http_client_requests_total")
    capsys.readouterr()
    assert cli.main(["export", str(tmp_path / "nope"), "--format", "rcaeval", "-o", "x"]) == 2
    assert "not a run directory" in capsys.readouterr().err


# --- firebreak serve ----------------------------------------------------------------------
def scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode(), resp.headers["Content-Type"]


def frontend_200(text: str, service: str = "entry") -> float:
    fams = families(text)
    return samples(fams, "http_server_requests", "http_server_requests_total")[
        (("code", "200"), ("service", service))
    ]


def _serve_in_thread(speed: float, linger: bool = False, duration: float = DURATION):
    lines: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    result: dict = {}

    def target() -> None:
        result["r"] = serve_scenario(
            scenario(duration), speed=speed, port=0, linger=linger, stop=stop, announce=lines.put
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    url = lines.get(timeout=30).split()[1].rstrip(":")
    return url, lines, stop, thread, result


def test_serve_paces_the_run_and_answers_scrapes():
    url, _, stop, thread, result = _serve_in_thread(speed=300)  # 600 s in about 2 s
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        time.sleep(0.4)
        first, ctype = scrape(url)
        assert ctype.startswith("text/plain; version=0.0.4")
        time.sleep(0.6)
        second, _ = scrape(url)
        assert 0 < frontend_200(first) < frontend_200(second)
        sim_time = samples(families(second), "firebreak_simulation_time_seconds")[()]
        assert 0 < sim_time < DURATION  # paced: not finished after ~1 s of wall time
        om, om_type = scrape(url, "application/openmetrics-text; version=1.0.0")
        assert om_type.startswith("application/openmetrics-text") and om.endswith("# EOF\n")
        with pytest.raises(urllib.error.HTTPError) as err:
            scrape(url.replace("/metrics", "/nope"))
        assert err.value.code == 404
        thread.join(timeout=30)
    finally:
        stop.set()
    assert not thread.is_alive()
    assert result["r"].sim_seconds == pytest.approx(DURATION)
    assert not result["r"].interrupted
    assert result["r"].wall_seconds >= DURATION / 300 * 0.9
    with pytest.raises(urllib.error.URLError):
        scrape(url)  # the server is gone once the run ended


def test_serve_linger_keeps_the_final_state_until_stopped():
    url, lines, stop, thread, result = _serve_in_thread(speed=1e6, linger=True)
    try:
        assert "serving the final state" in lines.get(timeout=30)
        a, _ = scrape(url)
        time.sleep(0.2)
        b, _ = scrape(url)
        assert frontend_200(a) == frontend_200(b) > 0
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and not result["r"].interrupted


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_serve_command_in_a_process_scrape_and_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [*SERVE, str(STEADY), "--duration", "1h", "--speed", "60", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        preexec_fn=_sigint_default,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "serve printed no address"
        line = proc.stdout.readline()
        url = line.split()[1].rstrip(":")
        assert url.startswith("http://127.0.0.1:"), line
        time.sleep(0.5)
        first = frontend_200(scrape(url)[0], "frontend")
        time.sleep(1.0)
        second = frontend_200(scrape(url)[0], "frontend")
        assert second > first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "interrupted at t=" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # serving writes nothing


def test_serve_errors_exit_2_with_a_message(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["serve", str(STEADY), "--duration", "60", "--port", str(port)]
        assert cli.main(args) == 2
        assert "already in use" in capsys.readouterr().err
    cases = [
        (["--port", "70000"], "--port: must be 0-65535"),
        (["--speed", "0"], "--speed: must be a positive finite number"),
        (["--host", "203.0.113.9"], "no such local address"),
    ]
    for extra, message in cases:
        assert cli.main(["serve", str(STEADY), "--duration", "60", *extra]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["serve", "no-such-scenario.yaml", "--port", "0"]) == 2
    assert "file not found" in capsys.readouterr().err
