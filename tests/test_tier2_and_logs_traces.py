"""Tier-2 multivariate detectors, the log detector and the trace-edge detector on twin runs.

Detectors are fitted on the pre-fault part of a run and judged on later rows only (normal
rows after the training stretch against fault rows); labels are never shown to them.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SCENARIOS, make_scenario, simulate, topology_dict
from scipy import stats
from sklearn.metrics import roc_auc_score

from detectors.anomaly.logs import LogDetector, TemplateMiner, poisson_tail, tokenize
from detectors.anomaly.multivariate import (
    AutoencoderDetector,
    IsolationForestDetector,
    PcaDetector,
    ServiceScaler,
)
from detectors.anomaly.traces import (
    EdgeCall,
    TraceEdgeDetector,
    binomial_tail,
    edge_calls,
    read_edge_calls,
)
from detectors.base import Alert, Multivariate
from twin.run.runner import run_scenario
from twin.scenario.loader import load_scenario
from twin.telemetry.spans import Span

FAULT_START, FAULT_END = 3600.0, 6300.0  # bad-deploy: 1 h to 1 h 45 min
TRAIN_END = 2400.0
FAST_AE = {"epochs": 15}


def _quiet(scenario, **telemetry):
    """The scenario with plots off (and trace settings as given): tests write little."""
    tel = scenario.telemetry.model_copy(update={"plot": False, **telemetry})
    return scenario.model_copy(update={"telemetry": tel})


@pytest.fixture(scope="module")
def bad_deploy():
    return simulate(load_scenario(SCENARIOS / "bad-deploy.yaml", duration=2 * 3600))


@pytest.fixture(scope="module")
def system_rows(bad_deploy):
    X = bad_deploy.values.reshape(len(bad_deploy.times), -1)
    t = bad_deploy.times
    train = X[t < TRAIN_END]
    normal = X[(t >= TRAIN_END) & (t < FAULT_START)]
    fault = X[(t >= FAULT_START + 60) & (t < FAULT_END)]
    return train, normal, fault


def _auc(det, normal: np.ndarray, fault: np.ndarray) -> float:
    scores = np.r_[det.score_many(normal), det.score_many(fault)]
    return roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(fault))], scores)


MODELS = [
    pytest.param(lambda seed: IsolationForestDetector(seed=seed), id="iforest"),
    pytest.param(lambda seed: PcaDetector(), id="pca"),
    pytest.param(lambda seed: AutoencoderDetector(seed=seed, **FAST_AE), id="autoencoder"),
]


@pytest.mark.parametrize("make", MODELS)
def test_fault_rows_outscore_held_out_normal_rows(make, system_rows) -> None:
    train, normal, fault = system_rows
    det = make(0).fit(train)
    assert isinstance(det, Multivariate)
    assert _auc(det, normal, fault) > 0.85
    # calibrated: few held-out normal rows above 1.0, and score_one agrees with score_many
    assert np.mean(det.score_many(normal) > 1.0) < 0.05
    assert det.score_one(fault[10]) == pytest.approx(det.score_many(fault[10:11])[0])


@pytest.mark.parametrize("make", MODELS)
def test_same_seed_same_scores(make, system_rows) -> None:
    train, normal, _ = system_rows
    a, b = make(7).fit(train), make(7).fit(train)
    np.testing.assert_array_equal(a.score_many(normal[:200]), b.score_many(normal[:200]))


def test_constructors_only_store_parameters() -> None:
    det = AutoencoderDetector(hidden=32, seed=3)
    assert det.get_params()["hidden"] == 32 and det.get_params()["seed"] == 3
    assert not hasattr(det, "net_")
    assert IsolationForestDetector(n_estimators=10).get_params()["n_estimators"] == 10
    with pytest.raises(RuntimeError, match="fit"):
        PcaDetector().score_one(np.zeros(3))


def test_isolation_forest_scores_match_scikit_learn(system_rows) -> None:
    train, normal, fault = system_rows
    det = IsolationForestDetector(n_estimators=30, seed=1).fit(train)
    Z = det._z(np.r_[normal[:300], fault[:300]])
    np.testing.assert_allclose(det._raw(Z), -det.forest_.score_samples(Z), rtol=1e-12)


def test_learn_one_is_bounded_and_keeps_scoring(system_rows) -> None:
    train, normal, fault = system_rows
    pca = PcaDetector(forget=0.01, refit_every=50).fit(train)
    forest = IsolationForestDetector(n_estimators=20, buffer=100, refit_every=100).fit(train)
    ae = AutoencoderDetector(epochs=3, online_lr=1e-3).fit(train)
    for det in (pca, forest, ae):
        for x in normal[:200]:
            det.learn_one(x)
        assert det.score_many(fault[:50]).mean() > det.score_many(normal[200:400]).mean()
    assert len(forest.buffer_) == 100


def _service_rows(values: np.ndarray, scaler: ServiceScaler) -> np.ndarray:
    """T × services × metrics → (T·services) × metrics, standardised per service."""
    return scaler.transform(values).reshape(-1, values.shape[-1])


@pytest.fixture(scope="module")
def sock_shop():
    """Sock Shop, a topology the models never saw, with its catalogue 5x slower at 40 min."""
    fault = {"kind": "latency", "target": "catalogue", "start": 2400, "duration": 900}
    return simulate(
        make_scenario(
            topology_dict("sock-shop"),
            duration=3600,
            seed=5,
            workload={"classes": [{"name": "web", "entry": "front-end", "rate": 60}]},
            faults=[{**fault, "factor": 5.0}],
        )
    )


@pytest.mark.parametrize("make", MODELS)
def test_model_transfers_to_another_topology(make, bad_deploy, sock_shop) -> None:
    # source: Online Boutique's normal stretch, every 4th tick, one row per service
    src = bad_deploy.values[bad_deploy.times < TRAIN_END]
    det = make(0).fit(_service_rows(src[::4], ServiceScaler().fit(src)))
    # target: 20 minutes of warm-up give each service its own centre and scale, nothing more
    t, values = sock_shop.times, sock_shop.values
    scaler = ServiceScaler().fit(values[t < 1200])
    normal = _service_rows(values[(t >= 1200) & (t < 2400)], scaler)
    k = sock_shop.names.index("catalogue")
    hit = scaler.transform(values[(t >= 2460) & (t < 3300)])[:, k]
    assert _auc(det, normal, hit) > 0.8


# -- logs ------------------------------------------------------------------------------------
def test_miner_groups_lines_that_differ_only_in_numbers_and_ids() -> None:
    miner = TemplateMiner()
    same = [
        "served GetProduct id=OLJCESPC7Z duration_ms=8.4",
        "served GetProduct id=9SIQT8TOJO duration_ms=112.0",
        "served GetProduct id=66VCHSJNUP duration_ms=3",
    ]
    ids = {miner.add(line, "INFO").id for line in same}
    assert len(ids) == 1
    hgets = [
        f"HGET cart:{u} took {n} microseconds" for u, n in (("5e86-1f62", 611), ("c3e0-74", 4))
    ]
    assert len({miner.add(line, "INFO").id for line in hgets}) == 1
    other = miner.add("rpc error: code = Unavailable desc = connect: connection refused", "ERROR")
    assert other.id not in ids
    assert tokenize("goroutine 17 at 0x8a3f21 user=01427df3-3234") == [
        "goroutine", "<*>", "at", "<*>", "user=<*>-<*>",
    ]  # fmt: skip


def test_poisson_and_binomial_tails_agree_with_scipy() -> None:
    for k, lam in ((5, 0.5), (30, 4.0), (200, 20.0), (3, 2.5)):
        assert poisson_tail(k, lam) == pytest.approx(stats.poisson.sf(k - 1, lam), rel=1e-6)
    for k, n, p in ((5, 40, 0.01), (20, 60, 0.05), (1, 10, 0.3)):
        assert binomial_tail(k, n, p) == pytest.approx(stats.binom.sf(k - 1, n, p), rel=1e-6)


def test_log_novelty_fires_after_an_outage_and_not_in_the_calm(tmp_path) -> None:
    scenario = _quiet(load_scenario(SCENARIOS / "dependency-outage.yaml", duration=3600))
    run_scenario(scenario, tmp_path, labels=False)
    records = [json.loads(line) for line in (tmp_path / "logs.jsonl").open()]
    start = 2700.0  # the outage of redis-cart (45 min)
    det = LogDetector().fit(r for r in records if r["t"] < 1500)
    calm = [a for r in records if 1500 <= r["t"] < start for a in det.update(r)]
    assert calm == []
    later = [a for r in records if r["t"] >= start for a in det.update(r)] + det.flush()
    novel = [a for a in later if a.detector == "logs.novelty"]
    assert novel and all(a.severity == "critical" for a in novel)
    assert min(a.time for a in novel) < start + 30
    assert {"cartservice", "frontend"} <= {a.service for a in novel}
    assert any(a.detector == "logs.burst" and a.service == "cartservice" for a in later)


def _line(t: float, level: str, message: str, service: str = "api") -> dict:
    return {"t": t, "service": service, "level": level, "message": message}


def test_log_burst_on_a_synthetic_stream() -> None:
    rng = np.random.default_rng(0)
    normal = []
    for i in range(3600):  # an hour: one INFO line a second, a timeout WARN every ~2 minutes
        normal.append(_line(i + 0.5, "INFO", f"GET /item/{rng.integers(1e6)} took {i % 97} ms"))
        if rng.random() < 1 / 120:
            normal.append(_line(i + 0.7, "WARN", f"timeout calling db after {i % 50} ms"))
    det = LogDetector().fit(normal)
    quiet = [_line(3600 + i + 0.5, "INFO", f"GET /item/{i} took 5 ms") for i in range(600)]
    assert det.process(quiet) == []
    storm = [_line(4200 + i * 0.5, "WARN", f"timeout calling db after {i} ms") for i in range(60)]
    alerts = det.process(storm)
    bursts = [a for a in alerts if a.detector == "logs.burst"]
    assert {a.signal for a in bursts} >= {"log_level:WARN", "log:timeout calling db after <*> ms"}
    assert all(isinstance(a, Alert) and a.score >= 1.0 for a in bursts)
    assert not any(a.detector == "logs.novelty" for a in alerts)  # the template is known


# -- traces ----------------------------------------------------------------------------------
def test_trace_edges_into_a_slowed_service_flag_during_the_fault_only(tmp_path) -> None:
    scenario = _quiet(load_scenario(SCENARIOS / "fidelity-latency.yaml"), trace_rate=0.01)
    run_scenario(scenario, tmp_path, labels=False)
    calls = read_edge_calls(tmp_path / "traces.json")
    start, end = 480.0, 960.0  # catalog 4x slower from 8 to 16 minutes
    det = TraceEdgeDetector().fit(c for c in calls if c.time < 300)
    alerts = det.process(c for c in calls if c.time >= 300)
    assert all(start < a.time <= end + det.window_s for a in alerts)
    catalog = [a for a in alerts if a.signal == "edge:frontend->productcatalogservice:latency"]
    assert len(catalog) >= 6
    assert all(
        a.service == "productcatalogservice" and a.detector == "traces.edge" for a in catalog
    )


def test_trace_edge_errors_and_server_span_fallback() -> None:
    spans = [
        Span("t1", "a", None, "web", "GET", "server", 0.0, 0.05),
        Span("t1", "b", "a", "web", "db.call", "client", 0.01, 0.04, False, {"peer.service": "db"}),
        Span("t1", "c", "b", "db", "query", "server", 0.011, 0.039),
        Span("t1", "d", "a", "cache", "get", "server", 0.04, 0.045, True),  # no client span
    ]
    calls = edge_calls(spans)
    assert {(c.caller, c.callee, c.error) for c in calls} == {
        ("web", "db", False),
        ("web", "cache", True),
    }
    rng = np.random.default_rng(1)

    def stream(t0: float, n: int, p_err: float) -> list[EdgeCall]:
        lat = np.exp(rng.normal(math.log(0.02), 0.3, n))
        return [
            EdgeCall(t0 + i * 0.5, "web", "db", float(lat[i]), bool(rng.random() < p_err))
            for i in range(n)
        ]

    det = TraceEdgeDetector().fit(stream(0.0, 2000, 0.001))
    assert det.process(stream(1200.0, 240, 0.001)) == []
    bad = det.process(stream(1320.0, 240, 0.3))
    assert bad and {a.signal for a in bad} == {"edge:web->db:errors"}
