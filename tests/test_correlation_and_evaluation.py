"""Alert correlation (time and topology) and honest event-wise scoring against labels."""

from __future__ import annotations

import json
from dataclasses import dataclass

import networkx as nx
import pyarrow.parquet as pq
import pytest
from conftest import SCENARIOS, ideal

from detectors.anomaly.evaluation import (
    EventScores,
    LabelsError,
    alert_episodes,
    correlation_quality,
    detection_delays,
    evaluate,
    event_scores,
    false_alerts_per_service_day,
    load_labels,
    parse_labels,
)
from detectors.base import Alert
from detectors.correlation import CorrelationError, Correlator, correlate
from twin.errors import FirebreakError
from twin.run.runner import run_scenario
from twin.scenario.loader import load_scenario


def alert(t: float, service: str, signal: str = "error_ratio", detector: str = "thr") -> Alert:
    return Alert(float(t), service, signal, 1.0, "critical", detector)


def shop() -> nx.DiGraph:
    """frontend -> cart -> redis, frontend -> checkout -> {payment, email}; a separate
    batch -> store pair reaches none of them."""
    g = nx.DiGraph()
    g.add_edges_from(
        [
            ("frontend", "cart"),
            ("cart", "redis"),
            ("frontend", "checkout"),
            ("checkout", "payment"),
            ("checkout", "email"),
            ("batch", "store"),
        ]
    )
    return g


@dataclass
class Group:
    """A hand-built incident: all scoring needs is an id and alerts."""

    id: str
    alerts: list[Alert]


def fault(fid, target, start, end, affected=(), kind="latency", **extra) -> dict:
    return {
        "id": fid,
        "kind": kind,
        "target": target,
        "start": start,
        "end": end,
        "affected": [{"service": s, "onset": on, "until": un} for s, on, un in affected],
        **extra,
    }


# ----------------------------------------------------------------------------- correlation


def test_alert_storm_across_connected_services_becomes_one_incident():
    c = Correlator(shop())
    storm = [alert(100, "redis"), alert(101, "cart"), alert(102, "frontend")]
    storm += [alert(103, "checkout"), alert(104, "cart", "latency_p99_ms"), alert(105, "redis")]
    for a in storm:
        c.add(a)
    assert len(c.incidents) == 1
    inc = c.incidents[0]
    assert inc.services == {"redis", "cart", "frontend", "checkout"}
    assert inc.signals == {"error_ratio", "latency_p99_ms"}
    assert (inc.opened, inc.updated, inc.closed) == (100.0, 105.0, None)
    assert len(inc.alerts) == 6 and inc.id == "inc-00001"


def test_simultaneous_alerts_on_unconnected_services_stay_apart():
    c = Correlator(shop())
    c.add(alert(50, "redis"))
    c.add(alert(50, "store"))
    c.add(alert(50, "payment"))  # two hops from cart, three from redis
    c.add(alert(51, "batch"))  # store's neighbour joins store's incident
    assert [sorted(i.services) for i in c.incidents] == [["redis"], ["batch", "store"], ["payment"]]
    assert len({i.id for i in c.incidents}) == 3


def test_two_hops_reach_further_than_one():
    c = Correlator(shop(), hops=2)
    c.add(alert(0, "redis"))
    c.add(alert(1, "frontend"))  # redis - cart - frontend
    assert len(c.incidents) == 1


def test_incident_closes_after_the_quiet_period_and_a_new_one_opens():
    c = Correlator(shop(), window_s=120, quiet_s=300)
    c.add(alert(0, "cart"))
    c.add(alert(60, "cart"))
    assert c.close_idle(359) == []
    closed = c.close_idle(360)
    assert [i.id for i in closed] == ["inc-00001"] and closed[0].closed == 360.0
    assert c.open_incidents == []
    later = c.add(alert(400, "cart"))
    assert later.id == "inc-00002" and later.opened == 400.0
    assert [i.id for i in c.incidents] == ["inc-00001", "inc-00002"]


def test_add_closes_idle_incidents_itself():
    c = Correlator(shop(), quiet_s=300)
    first = c.add(alert(0, "cart"))
    second = c.add(alert(300, "cart"))  # exactly quiet_s later: the first has closed
    assert first is not second and first.closed == 300.0 and second.is_open


def test_a_stale_neighbour_does_not_link_but_the_same_service_does():
    c = Correlator(shop(), window_s=120, quiet_s=300)
    c.add(alert(0, "cart"))
    c.add(alert(200, "redis"))  # cart's last alert is 200 s old: past the window
    assert len(c.incidents) == 2
    c.add(alert(250, "cart"))  # cart is in the first incident, still open; redis is fresh
    assert len(c.incidents) == 1 and c.incidents[0].merged == ["inc-00002"]


def test_a_bridging_alert_merges_two_incidents_into_the_oldest():
    c = Correlator(shop())
    c.add(alert(0, "redis"))
    c.add(alert(0, "payment"))
    c.add(alert(10, "cart"))  # joins redis's incident
    c.add(alert(20, "checkout"))  # joins payment's incident
    assert len(c.incidents) == 2
    merged = c.add(alert(30, "frontend"))  # neighbour of cart and of checkout
    assert c.incidents == [merged] and merged.id == "inc-00001"
    assert merged.merged == ["inc-00002"]
    assert merged.services == {"redis", "payment", "cart", "checkout", "frontend"}
    assert [a.time for a in merged.alerts] == [0, 0, 10, 20, 30]
    c.add(alert(40, "email"))  # after the merge, checkout's neighbours route to the survivor
    assert len(c.incidents) == 1 and len(merged.alerts) == 6


def test_correlator_accepts_a_topology_object_and_unknown_services():
    class Topo:
        def graph(self) -> nx.DiGraph:
            return shop()

    incidents = correlate([alert(5, "cart"), alert(1, "redis"), alert(2, "ghost")], Topo())
    assert [sorted(i.services) for i in incidents] == [["cart", "redis"], ["ghost"]]
    assert all(i.closed == i.updated + 300 for i in incidents)
    assert incidents[0].to_dict()["services"] == ["cart", "redis"]


def test_correlator_errors():
    c = Correlator(shop())
    c.add(alert(10, "cart"))
    with pytest.raises(CorrelationError, match="t=5 on 'cart' arrived after t=10"):
        c.add(alert(5, "cart"))
    with pytest.raises(FirebreakError, match="window_s: expected a positive number, got 0"):
        Correlator(shop(), window_s=0)
    with pytest.raises(CorrelationError, match="quiet_s"):
        Correlator(shop(), quiet_s=-1)
    with pytest.raises(CorrelationError, match=r"hops: expected a whole number >= 0, got 1\.5"):
        Correlator(shop(), hops=1.5)
    with pytest.raises(CorrelationError, match="got list"):
        Correlator([("a", "b")])


# ----------------------------------------------------------------------------- evaluation


def test_compression_and_purity_on_a_known_case():
    faults = parse_labels(
        {
            "faults": [
                fault("F1", "redis", 100, 400, [("cart", 110, 450)]),
                fault("F2", "store", 1000, 1100),
            ]
        }
    )
    f1 = [alert(100, "redis"), alert(120, "cart"), alert(300, "redis"), alert(480, "cart")]
    noise_in_a = alert(200, "payment")  # payment is in neither fault's services
    f2 = [alert(1010, "store"), alert(1020, "store")]
    lone_noise = alert(5000, "cart")
    incidents = [Group("A", [*f1, noise_in_a]), Group("B", f2), Group("C", [lone_noise])]
    alerts = sorted([*f1, noise_in_a, *f2, lone_noise], key=lambda a: a.time)
    q = correlation_quality(alerts, incidents, faults)
    assert q.alerts == 8 and q.incidents == 3
    assert q.compression == pytest.approx(1 - 3 / 8)
    assert q.purity == pytest.approx((4 + 2 + 1) / 8)  # cart at 480 is within until 450 + 60
    assert (q.faults_with_alerts, q.surfaced, q.surfaced_share) == (2, 2, 1.0)
    assert q.added_delay_s == {"F1": 0.0, "F2": 0.0}
    # episodes: redis (100, 300), cart 120, cart 480 (360 s later), payment, store, cart 5000
    assert q.episodes == 6 and q.episode_compression == pytest.approx(0.5)
    inc = event_scores(incidents, faults)
    assert (inc.items, inc.true_items, inc.detected) == (3, 2, 2)


def test_a_fault_swallowed_by_another_incident_surfaces_late_or_not_at_all():
    faults = parse_labels(
        {"faults": [fault("big", "cart", 0, 600), fault("small", "email", 100, 200)]}
    )
    big = [alert(t, "cart") for t in range(0, 60, 10)]
    small_first = alert(100, "email")
    small_later = [alert(150, "email"), alert(160, "email")]
    swallowed = [Group("X", [*big, small_first]), Group("Y", small_later)]
    q = correlation_quality([*big, small_first, *small_later], swallowed, faults)
    assert q.surfaced_share == 1.0 and q.added_delay_s == {"big": 0.0, "small": 50.0}
    hidden = [Group("X", [*big, small_first, *small_later])]
    q = correlation_quality([*big, small_first, *small_later], hidden, faults)
    assert (q.surfaced, q.faults_with_alerts, q.purity) == (1, 2, pytest.approx(6 / 9))
    assert "small" not in q.added_delay_s


def test_event_wise_scores_count_a_long_fault_once_and_outside_alerts_as_false():
    faults = parse_labels(
        {"faults": [fault("long", "cart", 0, 36_000), fault("missed", "store", 40_000, 40_100)]}
    )
    alerts = [alert(5000, "cart"), alert(50_000, "cart")]  # one inside, one outside every window
    s = event_scores(alert_episodes(alerts), faults)
    assert (s.faults, s.detected, s.items, s.true_items) == (2, 1, 2, 1)
    assert s.precision == 0.5 and s.recall == 0.5 and s.f1 == pytest.approx(0.5)
    # a point-adjusted scorer would credit all 36,000 s of the fault; here it is one event
    many = event_scores(alert_episodes([alert(t, "cart") for t in range(0, 36_000, 500)]), faults)
    assert (many.detected, many.recall) == (1, 0.5)


def test_detection_window_grace_and_aftermath():
    faults = parse_labels({"faults": [fault("f", "cart", 100, 200, [("frontend", 105, 400)])]})
    before = alert(99, "cart")  # before start: neither detects nor counts as true
    aftermath = alert(400, "frontend")  # past end + grace, inside until + grace: true, no credit
    in_grace = alert(260, "frontend")  # end + 60
    late = alert(461, "frontend")  # past until + grace: false
    s = event_scores([Group(str(i), [a]) for i, a in enumerate([before, aftermath])], faults)
    assert (s.detected, s.true_items) == (0, 1)
    s = event_scores([Group("g", [in_grace]), Group("h", [late])], faults)
    assert (s.detected, s.true_items, s.delays_s) == (1, 1, {"f": 160.0})
    assert event_scores([Group("g", [in_grace])], faults, grace_s=30).detected == 0


def test_mttd_is_first_qualifying_alert_minus_start_over_detected_faults():
    faults = parse_labels(
        {
            "faults": [
                fault("a", "cart", 100, 400),
                fault("b", "checkout", 1000, 1200, [("payment", 1001, 1300)]),
                fault("c", "store", 5000, 5100),
            ]
        }
    )
    alerts = [alert(130, "cart"), alert(200, "cart"), alert(1010, "payment"), alert(1005, "email")]
    assert detection_delays(alerts, faults) == {"a": 30.0, "b": 10.0}
    s = event_scores(alert_episodes(alerts), faults)
    assert s.mttd_s == pytest.approx(20.0) and s.recall == pytest.approx(2 / 3)
    assert event_scores([], faults).mttd_s is None


def test_false_alerts_per_service_day():
    faults = parse_labels({"faults": [fault("f", "cart", 0, 100)]})
    alerts = [alert(t, "store") for t in (1000, 1100, 1200)]  # one episode (gaps <= 300 s)
    alerts += [alert(5000, "store"), alert(9000, "email", "latency_p99_ms"), alert(50, "cart")]
    episodes = alert_episodes(alerts)
    assert len(episodes) == 4
    rate = false_alerts_per_service_day(episodes, faults, n_services=6, duration_s=43_200)
    assert rate == pytest.approx(3 / (6 * 0.5))
    with pytest.raises(FirebreakError, match="n_services: expected a positive count, got 0"):
        false_alerts_per_service_day(episodes, faults, n_services=0, duration_s=1)
    with pytest.raises(FirebreakError, match="duration_s"):
        false_alerts_per_service_day(episodes, faults, n_services=1, duration_s=0)


def test_episodes_split_by_key_and_gap():
    alerts = [alert(0, "cart"), alert(300, "cart"), alert(601, "cart"), alert(10, "cart", "cpu")]
    eps = alert_episodes(alerts, gap_s=300)
    assert [(e.id, len(e.alerts)) for e in eps] == [
        ("cart/error_ratio/thr@0", 2),
        ("cart/cpu/thr@10", 1),
        ("cart/error_ratio/thr@601", 1),
    ]


def test_suite_scores_add_counts_not_ratios():
    a = EventScores(faults=1, detected=1, items=1, true_items=1, delays=(("crash-0", 10.0),))
    b = EventScores(faults=3, detected=1, items=3, true_items=0, delays=(("crash-0", 30.0),))
    total = a + b
    assert (total.precision, total.recall) == (0.25, 0.5)
    assert total.to_dict()["mttd_s"] == 20.0  # the same fault id in two runs: both delays kept
    assert EventScores(0, 0, 0, 0).f1 == 1.0


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "labels.json: expected a mapping at the top level, got list"),
        ({}, "labels.json: faults: missing"),
        ({"faults": {}}, "faults: expected a list, got dict"),
        ({"faults": [fault("f", "a", 0, 1), 3]}, r"faults\[1\]: expected a mapping, got int"),
        ({"faults": [{"id": "f", "kind": "crash", "target": "a", "start": 0}]}, r"\.end: missing"),
        ({"faults": [fault("f", "a", "9am", 1)]}, r"faults\[0\]\.start: expected a finite number"),
        ({"faults": [fault("f", "a", 10, 5)]}, r"faults\[0\]\.end: 5 is before start 10"),
        ({"faults": [fault("", "a", 0, 5)]}, r"faults\[0\]\.id: expected a non-empty string"),
        ({"faults": [fault("f", "a", 0, 5, [("b", 3, 1)])]}, r"affected\[0\]\.until: 1 is before"),
        (
            {"faults": [{**fault("f", "a", 0, 5), "affected": [{"service": "b", "onset": 1}]}]},
            r"faults\[0\]\.affected\[0\]\.until: missing",
        ),
        ({"faults": [fault("f", "a", 0, 5), fault("f", "b", 0, 5)]}, "faults\\[1\\].id: duplicate"),
        ({"faults": [fault("f", "a", True, 5)]}, "got True"),
    ],
)
def test_malformed_labels_fail_with_field_and_value(labels, message):
    with pytest.raises(LabelsError, match=message) as info:
        parse_labels(labels)
    assert isinstance(info.value, FirebreakError)


def test_label_files_that_cannot_be_read(tmp_path):
    with pytest.raises(LabelsError, match="cannot read labels"):
        load_labels(tmp_path)  # a run directory without labels.json
    bad = tmp_path / "labels.json"
    bad.write_text("{not json")
    with pytest.raises(LabelsError, match="not valid JSON"):
        load_labels(bad)
    bad.write_text(json.dumps({"faults": [fault("f", "a", 0, 5, kind="network_partition")]}))
    (f,) = load_labels(tmp_path)
    assert f.peer is None and f.services == {"a"}
    bad.write_text(json.dumps({"faults": [fault("p", "a", 0, 5, params={"peer": "b"})]}))
    assert load_labels(bad)[0].services == {"a", "b"}


# ----------------------------------------------------------------------------- end to end


def test_real_run_labels_score_a_threshold_detector(tmp_path):
    """redis-cart's outage (45 min to 60 min) seen by a plain error-ratio threshold."""
    scenario = ideal(load_scenario(SCENARIOS / "dependency-outage.yaml", duration=3900))
    run_scenario(scenario, tmp_path / "run")
    table = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pandas()
    errors = table[(table.metric == "error_ratio") & (table.value > 0.05)].sort_values("time")
    alerts = [
        alert(t, str(s), detector="threshold")
        for t, s in zip(errors.time, errors.service, strict=True)
    ]
    assert len(alerts) > 100  # a storm: every tick on several services

    faults = load_labels(tmp_path / "run")
    assert [(f.id, f.target, f.start, f.end) for f in faults] == [
        ("dependency_outage-0", "redis-cart", 2700.0, 3600.0)
    ]
    incidents = correlate(alerts, scenario.topology)
    report = evaluate(
        alerts,
        faults,
        n_services=len(scenario.topology.services),
        duration_s=scenario.duration,
        incidents=incidents,
    )
    d = report.to_dict()
    assert d["alerts"]["recall"] == 1.0 and d["alerts"]["precision"] == 1.0
    assert 0 <= d["alerts"]["mttd_s"] <= 5
    assert d["false_alerts_per_service_day"] == 0.0
    assert len(incidents) == 1 and d["incidents"]["f1"] == 1.0
    corr = d["correlation"]
    assert corr["compression"] > 0.99 and corr["purity"] == 1.0
    assert corr["surfaced_share"] == 1.0 and corr["mean_added_delay_s"] == 0.0
    json.dumps(d)  # plain data, ready for summary.json
