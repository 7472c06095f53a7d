"""The topology library and the generator: reference edges, cycles, determinism, base load."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import yaml

from twin.errors import FirebreakError
from twin.scenario.generate import (
    generate_topology,
    suggest_classes,
    suggested_total_rps,
    write_topology,
)
from twin.scenario.loader import load_topology
from twin.scenario.topology import Topology

TOPOLOGY_DIR = Path(__file__).resolve().parents[1] / "scenarios" / "topologies"
FILES = sorted(TOPOLOGY_DIR.glob("*.yaml"))

# base load per file (entry -> rps), as documented in each file's header
BASE_LOAD = {
    "online-boutique": {"frontend": 100.0},
    "sock-shop": {"front-end": 60.0, "queue-master": 3.0},
    "social-network": {"nginx-thrift": 200.0, "media-frontend": 20.0},
    "hotel-reservation": {"frontend": 200.0},
    "train-ticket": {"ts-ui-dashboard": 50.0},
}

# a few edges per system, copied from shared/reference/topologies.md
REFERENCE_EDGES = {
    "online-boutique": [
        ("frontend", "currencyservice"),
        ("frontend", "adservice"),
        ("frontend", "recommendationservice"),
        ("checkoutservice", "emailservice"),
        ("checkoutservice", "paymentservice"),
        ("recommendationservice", "productcatalogservice"),
        ("cartservice", "redis-cart"),
    ],
    "sock-shop": [
        ("front-end", "session-db"),
        ("front-end", "orders"),
        ("orders", "payment"),
        ("orders", "shipping"),
        ("shipping", "rabbitmq"),
        ("queue-master", "rabbitmq"),
        ("carts", "carts-db"),
    ],
    "social-network": [
        ("nginx-thrift", "compose-post-service"),
        ("compose-post-service", "unique-id-service"),
        ("text-service", "user-mention-service"),
        ("home-timeline-service", "social-graph-service"),
        ("user-mention-service", "user-mongodb"),
        ("media-frontend", "media-mongodb"),
    ],
    "hotel-reservation": [
        ("frontend", "search"),
        ("frontend", "attractions"),
        ("search", "geo"),
        ("search", "rate"),
        ("rate", "memcached-rate"),
        ("reservation", "mongodb-reservation"),
    ],
    "train-ticket": [
        ("ts-preserve-service", "ts-security-service"),
        ("ts-ticketinfo-service", "ts-basic-service"),
        ("ts-basic-service", "ts-price-service"),
        ("ts-travel-plan-service", "ts-route-plan-service"),
        ("ts-seat-service", "ts-config-service"),
        ("ts-ui-dashboard", "ts-admin-user-service"),
        ("ts-cancel-service", "ts-notification-service"),
    ],
}

REFERENCE_CYCLES = {
    "social-network": [("user-service", "social-graph-service")],
    "train-ticket": [
        ("ts-auth-service", "ts-user-service"),
        ("ts-travel-service", "ts-seat-service"),
        ("ts-travel2-service", "ts-seat-service"),
    ],
}


def topology(name: str) -> Topology:
    return load_topology(TOPOLOGY_DIR / f"{name}.yaml")


def edges(topo: Topology) -> set[tuple[str, str]]:
    return {(c.source, c.target) for c in topo.calls}


def expected_utilisation(
    topo: Topology, external: dict[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """CPU (of the limit) and worker-pool utilisation from exact expected rates.

    Rates solve λ = ext + Wᵀλ (cycles included, as the back edges have p < 1); a worker is
    held for the service's own time plus its sync calls' holding times: H = S + W_sync H.
    """
    names = list(topo.services)
    g = topo.graph()
    w = nx.to_numpy_array(g, nodelist=names, weight="weight")
    ext = np.array([external.get(n, 0.0) for n in names])
    rate = np.linalg.solve(np.eye(len(names)) - w.T, ext)
    sync = nx.DiGraph()
    sync.add_nodes_from(names)
    sync.add_edges_from(
        (c.source, c.target, {"weight": c.per_request * c.probability})
        for c in topo.calls
        if c.sync
    )
    ws = nx.to_numpy_array(sync, nodelist=names, weight="weight")
    own = np.array([topo.services[n].service_time.mean_ms for n in names])
    hold_ms = np.linalg.solve(np.eye(len(names)) - ws, own)
    cpu, workers = {}, {}
    for i, name in enumerate(names):
        svc = topo.services[name]
        cpu[name] = rate[i] * svc.cpu_per_request_ms / 1000 / (svc.replicas * svc.cpu_limit)
        workers[name] = rate[i] * hold_ms[i] / 1000 / (svc.replicas * svc.workers)
    return cpu, workers


# ------------------------------------------------------------------- the reference systems


def test_the_five_reference_systems_are_there() -> None:
    assert {f.stem for f in FILES} >= set(BASE_LOAD)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_every_topology_file_loads(path: Path) -> None:
    topo = load_topology(path)
    assert topo.name == path.stem
    assert topo.services and topo.calls


@pytest.mark.parametrize("name", sorted(REFERENCE_EDGES))
def test_reference_edges_are_present(name: str) -> None:
    assert set(REFERENCE_EDGES[name]) <= edges(topology(name))


@pytest.mark.parametrize("name", sorted(REFERENCE_CYCLES))
def test_reference_cycles_are_kept(name: str) -> None:
    topo = topology(name)
    for a, b in REFERENCE_CYCLES[name]:
        assert {(a, b), (b, a)} <= edges(topo)
    assert not nx.is_directed_acyclic_graph(topo.graph())


def test_online_boutique_has_exactly_the_reference_edges() -> None:
    frontend = [
        "productcatalogservice", "currencyservice", "cartservice", "recommendationservice",
        "shippingservice", "checkoutservice", "adservice",
    ]  # fmt: skip
    checkout = [
        "productcatalogservice", "shippingservice", "paymentservice", "emailservice",
        "currencyservice", "cartservice",
    ]  # fmt: skip
    expected = {("frontend", t) for t in frontend} | {("checkoutservice", t) for t in checkout}
    expected |= {("recommendationservice", "productcatalogservice"), ("cartservice", "redis-cart")}
    topo = topology("online-boutique")
    assert edges(topo) == expected
    assert [n for n, s in topo.services.items() if s.kind == "store"] == ["redis-cart"]


def test_online_boutique_optional_and_async_calls() -> None:
    calls = {(c.source, c.target): c for c in topology("online-boutique").calls}
    assert not calls["frontend", "adservice"].required
    assert not calls["frontend", "recommendationservice"].required
    assert not calls["checkoutservice", "emailservice"].sync
    assert calls["frontend", "checkoutservice"].required


def test_train_ticket_gateway_and_edge_counts() -> None:
    topo = topology("train-ticket")
    gateway = [c.target for c in topo.calls if c.source == "ts-ui-dashboard"]
    services = set(topo.services) - {"ts-ui-dashboard"}
    assert len(services) == 41
    assert len(gateway) == 38
    unreached = {"ts-consign-price-service", "ts-food-map-service", "ts-seat-service"}
    assert set(gateway) == services - unreached
    assert len(topo.calls) - len(gateway) == 95


@pytest.mark.parametrize("name", sorted(BASE_LOAD))
def test_base_load_runs_at_moderate_utilisation(name: str) -> None:
    topo = topology(name)
    cpu, workers = expected_utilisation(topo, BASE_LOAD[name])
    assert max(cpu.values()) < 0.6, cpu
    assert max(workers.values()) < 0.6, workers
    for svc_name, svc in topo.services.items():
        # one request runs on one thread: it cannot burn more CPU than its own time
        assert svc.cpu_per_request_ms <= svc.service_time.mean_ms, svc_name
        if svc.hpa is not None:
            # at rest the autoscaler must not scale out: usage of the request below target
            of_request = cpu[svc_name] * svc.cpu_limit / svc.cpu_request
            assert of_request < svc.hpa.target_cpu * (1 - svc.hpa.tolerance) + 0.05, svc_name


@pytest.mark.parametrize("name", sorted(BASE_LOAD))
def test_every_service_is_reached_at_base_load(name: str) -> None:
    topo = topology(name)
    g = topo.graph()
    reached = set()
    for entry in BASE_LOAD[name]:
        reached |= {entry} | nx.descendants(g, entry)
    assert reached == set(topo.services)


# ----------------------------------------------------------------------------- generator


def test_generator_is_deterministic() -> None:
    assert generate_topology(300, seed=11) == generate_topology(300, seed=11)
    assert generate_topology(300, seed=11) != generate_topology(300, seed=12)


@pytest.mark.parametrize("n", [2, 3, 10, 57, 250])
def test_generated_topology_validates_with_n_services(n: int, tmp_path: Path) -> None:
    raw = generate_topology(n, seed=n)
    topo = Topology.model_validate(raw)
    assert len(topo.services) == n
    assert yaml.safe_load(yaml.safe_dump(raw)) == raw  # plain types only
    path = write_topology(tmp_path / "gen.yaml", n, seed=n)
    assert path.read_text().startswith("# Generated by twin.scenario.generate")
    assert load_topology(path) == topo


def test_generated_names() -> None:
    names = set(generate_topology(1000, seed=1)["services"])
    assert {"gateway-1", "svc-0001", "store-001"} <= names
    assert all(n.split("-")[0] in {"gateway", "svc", "store"} for n in names)


@pytest.fixture(scope="module")
def fleet() -> Topology:
    return Topology.model_validate(generate_topology(1000, seed=3))


def test_generated_fan_out_is_heavy_tailed(fleet: Topology) -> None:
    g = fleet.graph()
    out = np.array([g.out_degree(n) for n, s in fleet.services.items() if s.kind == "service"])
    assert out.max() >= 10 * max(1.0, float(np.median(out)))
    stores = [g.in_degree(n) for n, s in fleet.services.items() if s.kind == "store"]
    assert max(stores) >= 50  # a few stores are shared by many services


def test_generated_graph_is_mostly_layered(fleet: Topology) -> None:
    g = fleet.graph()
    cyclic = [c for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert cyclic  # a few cycles exist...
    assert sum(map(len, cyclic)) < 0.05 * len(g)  # ...but nearly everything is acyclic
    gateways = [n for n in g if n.startswith("gateway-")]
    assert 1 <= len(gateways) <= 8 and all(g.in_degree(n) == 0 for n in gateways)
    depth = {}
    for gw in gateways:
        for node, d in nx.single_source_shortest_path_length(g, gw).items():
            depth[node] = min(d, depth.get(node, d))
    assert set(depth) == set(g)  # every service is reachable from a gateway
    assert 4 <= max(depth.values()) <= 10


def test_generated_calls_include_optional_and_async(fleet: Topology) -> None:
    assert any(not c.required and c.sync for c in fleet.calls)
    assert any(not c.sync for c in fleet.calls)
    assert any(c.probability < 1 for c in fleet.calls)


def test_suggest_classes_splits_the_load_over_gateways() -> None:
    raw = generate_topology(1000, seed=5)
    classes = suggest_classes(raw, 400.0)
    assert sorted(c["entry"] for c in classes) == sorted(
        n for n in raw["services"] if n.startswith("gateway-")
    )
    assert len({c["name"] for c in classes}) == len(classes)
    assert sum(c["rate"] for c in classes) == pytest.approx(400.0, abs=0.01)
    assert suggested_total_rps(raw) == pytest.approx(100.0 * len(classes))


@pytest.mark.parametrize(("n", "seed"), [(50, 0), (400, 1), (1000, 2), (1000, 9)])
def test_generated_topology_is_not_overloaded_at_its_suggested_load(n: int, seed: int) -> None:
    raw = generate_topology(n, seed)
    classes = suggest_classes(raw, suggested_total_rps(raw))
    external = {c["entry"]: c["rate"] for c in classes}
    cpu, workers = expected_utilisation(Topology.model_validate(raw), external)
    assert max(cpu.values()) < 1.0
    assert max(workers.values()) < 1.0
    assert max(cpu.values()) > 0.1  # and the busy part of the fleet is not idle


def test_generator_rejects_a_too_small_fleet() -> None:
    with pytest.raises(FirebreakError, match="at least 2 services, got 1"):
        generate_topology(1, seed=0)
