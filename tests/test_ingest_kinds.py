"""Names as real systems write them: signal kinds, pods to services, columns to services."""

from __future__ import annotations

import pytest

from detectors.ingest.kinds import kind_of
from detectors.ingest.names import match_service, service_of_pod, split_column


@pytest.mark.parametrize(
    ("name", "kind", "bad"),
    [
        ("lat_50", "latency", 1),
        ("latency-90", "latency", 1),
        ("PodClientLatencyP90(s)", "latency", 1),
        ("http_server_request_duration_seconds", "latency", 1),
        ("latency-Average", "latency", 1),
        ("workload", "load", 0),
        ("PodWorkload(Ops)", "load", 0),
        ("requests-Sum", "load", 0),
        ("http_requests_total", "load", 0),
        ("arrival_rate", "load", 0),
        ("error", "errors", 1),
        ("error_ratio", "errors", 1),
        ("logerror", "errors", 1),
        ("PodSuccessRate(%)", "errors", -1),
        ("availability-Average", "errors", -1),
        ("cpu", "cpu", 1),
        ("CpuUsageRate(%)", "cpu", 1),
        ("container_cpu_usage_seconds_total", "cpu", 1),
        ("mem", "memory", 1),
        ("MemoryUsage(Mi)", "memory", 1),
        ("container_memory_working_set_bytes", "memory", 1),
        ("SyscallRead", "other", 0),
        ("value", "other", 0),
    ],
)
def test_kinds_from_names(name: str, kind: str, bad: int) -> None:
    k = kind_of(name)
    assert (k.kind, k.bad) == (kind, bad)


def test_units_and_host_signals() -> None:
    assert kind_of("PodClientLatencyP90(s)").unit == "s"
    assert kind_of("elapsed_ms").kind == "latency"
    assert kind_of("warmup(ms)").kind == "latency"  # the unit decides an unknown name
    assert kind_of("NodeCpuUsageRate(%)").host and not kind_of("CpuUsageRate(%)").host


@pytest.mark.parametrize(
    ("pod", "service"),
    [
        ("ts-contacts-service-866bd68c97-xcqfx", "ts-contacts-service"),
        ("ts-consign-price-service-df498d7fb-725nt", "ts-consign-price-service"),
        ("ts-ui-dashboard-5477b965f-2chkr", "ts-ui-dashboard"),
        ("redis-0", "redis"),
        ("redis-cache", "redis-cache"),  # `cache` has vowels: never a generated suffix
        ("frontend", "frontend"),
    ],
)
def test_pods_map_to_their_workload(pod: str, service: str) -> None:
    assert service_of_pod(pod) == service


def test_columns_split_against_known_services() -> None:
    assert split_column("carts_lat_50") == ("carts", "lat_50")
    assert split_column("carts-db_cpu", ["carts", "carts-db"]) == ("carts-db", "cpu")
    assert split_column("order_db_cpu", ["order", "order_db"]) == ("order_db", "cpu")
    assert split_column("value") is None
    assert (
        match_service("ts-auth-service-7f8d7d756d-k7b9j", ["ts-auth-service"]) == "ts-auth-service"
    )
    assert match_service("checkout_service", ["checkout-service"]) == "checkout-service"
