"""Every bad scenario input fails as a ScenarioError naming the file, the field path and the value.

Scenarios are written into tmp_path and point at the real Online Boutique topology by absolute
path, so each case differs from a valid scenario in exactly one place.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from twin.errors import FirebreakError, ScenarioError
from twin.scenario.durations import format_duration, parse_duration
from twin.scenario.loader import load_scenario, load_topology

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "scenarios" / "topologies" / "online-boutique.yaml"


def valid_scenario() -> dict[str, Any]:
    """A small scenario that loads; each case below breaks one thing in a fresh copy."""
    return {
        "name": "errors",
        "topology": str(TOPOLOGY),
        "duration": "1h",
        "seed": 1,
        "workload": {
            "classes": [
                {"name": "browse", "entry": "frontend", "rate": 90},
                {"name": "checkout", "entry": "frontend", "rate": 10},
            ]
        },
        "faults": [{"kind": "crash", "target": "cartservice", "start": "10m", "duration": "5m"}],
        "slos": [{"class": "browse", "availability": 0.999, "latency_ms": 500}],
    }


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_error(path: Path, **overrides: Any) -> str:
    """The message of the ScenarioError that loading `path` must raise."""
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, **overrides)
    return str(info.value)


def assert_names(message: str, *fragments: str) -> None:
    missing = [f for f in fragments if f not in message]
    assert not missing, f"{missing} not in error message: {message!r}"


def test_the_valid_base_loads(tmp_path: Path) -> None:
    sc = load_scenario(write_yaml(tmp_path / "ok.yaml", valid_scenario()))
    assert sc.duration == 3600.0
    assert sc.faults[0].start == 600.0


def test_scenario_error_is_a_firebreak_error() -> None:
    assert issubclass(ScenarioError, FirebreakError)


# --------------------------------------------------------------------- one broken field


def _set(*path: Any, value: Any) -> Callable[[dict], None]:
    """A mutation that sets scenario[path...] = value."""

    def mutate(sc: dict) -> None:
        node = sc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _add_fault(**fault: Any) -> Callable[[dict], None]:
    def mutate(sc: dict) -> None:
        sc["faults"].append(fault)

    return mutate


def _patch(patch: Any) -> Callable[[dict], None]:
    return _set("topology_patch", value=patch)


BROKEN: list[tuple[str, Callable[[dict], None], tuple[str, ...]]] = [
    ("fault-target-unknown", _set("faults", 0, "target", value="cartt"),
     ("faults[0].target", "unknown service", "'cartt'")),
    ("second-fault-target-unknown", _add_fault(kind="latency", target="nope", start="20m"),
     ("faults[1].target", "'nope'")),
    ("class-entry-unknown", _set("workload", "classes", 0, "entry", value="frontendd"),
     ("workload.classes[0].entry", "unknown service", "'frontendd'")),
    ("second-class-entry-unknown", _set("workload", "classes", 1, "entry", value="gateway"),
     ("workload.classes[1].entry", "'gateway'")),
    ("negative-rate", _set("workload", "classes", 0, "rate", value=-5),
     ("workload.classes[0].rate", "-5")),
    ("infinite-rate", _set("workload", "classes", 0, "rate", value=math.inf),
     ("workload.classes[0].rate", "inf")),
    ("fault-starts-after-run", _set("faults", 0, value={"kind": "crash", "target": "cartservice",
                                                          "start": "2h"}),
     ("faults[0].start", "7200s", "outside the run", "3600s")),
    ("fault-starts-when-run-ends", _set("faults", 0, "start", value="1h"),
     ("faults[0].start", "3600s", "outside the run")),
    ("fault-ends-after-run", _set("faults", 0, value={"kind": "crash", "target": "cartservice",
                                                        "start": "50m", "duration": "15m"}),
     ("faults[0].duration", "3900s", "after the run", "3600s")),
    ("top-level-typo", _set("seeed", value=3),
     ("seeed", "Extra inputs are not permitted", "3")),
    ("fault-field-typo", _set("faults", 0, "durration", value="5m"),
     ("faults[0].durration", "'5m'")),
    ("workload-field-typo", _set("workload", "noize", value=0.1),
     ("workload.noize", "0.1")),
    ("service-field-typo-in-patch", _patch({"services": {"frontend": {"replicass": 4}}}),
     ("services.frontend.replicass", "Extra inputs are not permitted", "4")),
    ("unknown-fault-kind", _set("faults", 0, "kind", value="crashh"),
     ("faults[0]", "'crashh'")),
    ("fault-parameter-out-of-range", _set("faults", 0, value={
        "kind": "errors", "target": "cartservice", "start": "10m", "rate": 2}),
     ("faults[0].rate", "2")),
    ("partition-peer-without-edge", _set("faults", 0, value={
        "kind": "network_partition", "target": "cartservice", "peer": "paymentservice",
        "start": "10m", "duration": "5m"}),
     ("faults[0].peer", "'cartservice'", "'paymentservice'")),
    ("partition-peer-unknown", _set("faults", 0, value={
        "kind": "network_partition", "target": "checkoutservice", "peer": "paymentt",
        "start": "10m"}),
     ("faults[0].peer", "unknown service", "'paymentt'")),
    ("packet-loss-peer-without-edge", _set("faults", 0, value={
        "kind": "packet_loss", "target": "emailservice", "peer": "redis-cart", "start": "10m",
        "loss": 0.1}),
     ("faults[0].peer", "'emailservice'", "'redis-cart'")),
    ("duplicate-class-names", _set("workload", "classes", 1, "name", value="browse"),
     ("workload.classes", "unique", "'browse'")),
    ("patch-unknown-service", _patch({"services": {"cartt": {"replicas": 2}}}),
     ("topology_patch.services.cartt", "unknown service", "'cartt'")),
    ("patch-unknown-edge", _patch({"calls": [{"from": "paymentservice", "to": "frontend",
                                              "timeout_ms": 5}]}),
     ("topology_patch.calls[0]", "'paymentservice'", "'frontend'")),
    ("patch-unknown-key", _patch({"servics": {}}),
     ("topology_patch", "'servics'")),
    ("patch-services-not-a-mapping", _patch({"services": ["frontend"]}),
     ("topology_patch.services",)),
    ("slo-unknown-class", _set("slos", 0, "class", value="browze"),
     ("slos[0].class", "unknown request class", "'browze'")),
    ("flash-crowd-unknown-class", _set("workload", "flash_crowds", value=[
        {"start": "10m", "duration": "5m", "multiplier": 2, "classes": ["checkoutt"]}]),
     ("workload.flash_crowds[0].classes", "'checkoutt'")),
    ("calendar-unknown-class", _set("workload", "calendar", value=[
        {"name": "sale", "kind": "campaign", "start": "10m", "duration": "5m", "lift": 2,
         "classes": ["sale"]}]),
     ("workload.calendar[0].classes", "'sale'")),
    ("duration-parsecs", _set("duration", value="5 parsecs"),
     ("duration", "not a duration", "'5 parsecs'")),
    ("fault-start-parsecs", _set("faults", 0, "start", value="5 parsecs"),
     ("faults[0].start", "'5 parsecs'")),
    ("fault-duration-fortnights", _set("faults", 0, "duration", value="3 fortnights"),
     ("faults[0].duration", "'3 fortnights'")),
    ("tick-jiffy", _set("tick", value="1 jiffy"),
     ("tick", "'1 jiffy'")),
    ("duration-zero", _set("duration", value=0),
     ("duration", "greater than 0", "0")),
    ("duration-negative", _set("duration", value="-1h"),
     ("duration", "'-1h'")),
    ("duration-infinite", _set("duration", value=math.inf),
     ("duration", "inf")),
    ("duration-infinite-string", _set("duration", value="inf"),
     ("duration", "'inf'")),
    ("negative-seed", _set("seed", value=-1),
     ("seed", "-1")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "fragments"), [(m, f) for _, m, f in BROKEN], ids=[i for i, _, _ in BROKEN]
)
def test_broken_field_names_path_and_value(
    tmp_path: Path, mutate: Callable[[dict], None], fragments: tuple[str, ...]
) -> None:
    sc = copy.deepcopy(valid_scenario())
    mutate(sc)
    path = write_yaml(tmp_path / "broken.yaml", sc)
    message = load_error(path)
    assert_names(message, str(path), *fragments)
    assert "Traceback" not in message


def test_overridden_duration_that_cuts_a_fault_is_an_error(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "ok.yaml", valid_scenario())
    message = load_error(path, duration=300.0)
    assert_names(message, "faults[0].start", "600s", "outside the run", "300s")


def test_overridden_negative_seed_is_an_error(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "ok.yaml", valid_scenario())
    assert_names(load_error(path, seed=-3), "seed", "-3")


# ------------------------------------------------------------------------- files, YAML


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: t\nduration: 1h\nseed: x: y\n", 3),
        ("name: t\n\tduration: 1h\n", 2),
        ("name: t\nworkload:\n  classes: [{name: a, entry: frontend\n  rate: [1, 2\n", 4),
        ('name: "unterminated\nduration: 1h\n', 3),
    ],
    ids=["mapping-in-value", "tab-indent", "unclosed-flow", "unclosed-quote"],
)
def test_malformed_yaml_says_so_with_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "malformed.yaml"
    path.write_text(text, encoding="utf-8")
    message = load_error(path)
    assert_names(message, str(path), "malformed YAML", f"line {line}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "NoneType"), ("- a\n- b\n", "list"), ("just text\n", "str")],
    ids=["empty", "list", "scalar"],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    assert_names(load_error(path), str(path), "expected a mapping", expected)


def test_missing_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert_names(load_error(path), str(path), "file not found")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert_names(load_error(tmp_path), str(tmp_path), "directory")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    assert_names(load_error(path), str(path), "UTF-8")


@pytest.mark.parametrize(
    "ref", ["/nonexistent/topology.yaml", "no-such-topology"], ids=["absolute", "by-name"]
)
def test_missing_topology_file(tmp_path: Path, ref: str) -> None:
    sc = valid_scenario()
    sc["topology"] = ref
    path = write_yaml(tmp_path / "s.yaml", sc)
    assert_names(load_error(path), str(path), "topology", "file not found", repr(ref))


def test_topology_by_name_resolves_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "topologies").mkdir()
    (tmp_path / "topologies" / "shop.yaml").write_text(TOPOLOGY.read_text(), encoding="utf-8")
    sc = valid_scenario()
    sc["topology"] = "shop"
    sc = load_scenario(write_yaml(tmp_path / "s.yaml", sc))
    assert "frontend" in sc.topology.services


# ------------------------------------------------------------------------- topologies


def broken_topology(tmp_path: Path, mutate: Callable[[dict], None]) -> Path:
    topo = yaml.safe_load(TOPOLOGY.read_text(encoding="utf-8"))
    mutate(topo)
    return write_yaml(tmp_path / "topology.yaml", topo)


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (_set("services", "frontend", "replicass", value=4),
         ("services.frontend.replicass", "Extra inputs are not permitted", "4")),
        (_set("services", "cartservice", "service_time", "mean_mss", value=2),
         ("services.cartservice.service_time.mean_mss", "2")),
        (_set("services", "frontend", "workers", value=0),
         ("services.frontend.workers", "0")),
        (_set("services", "frontend", "startup_s", value="5 parsecs"),
         ("services.frontend.startup_s", "'5 parsecs'")),
        (lambda t: t["calls"].append({"from": "frontend", "to": "ghost"}),
         ("calls[", "].to", "unknown service", "'ghost'")),
        (_set("services", "frontend", "hpa", value={"min_replicas": 5, "max_replicas": 2}),
         ("services.frontend.hpa.min_replicas", "5", "max_replicas 2")),
    ],
    ids=["service-typo", "nested-typo", "zero-workers", "bad-duration", "call-to-unknown",
         "hpa-min-above-max"],
)  # fmt: skip
def test_broken_topology_file(
    tmp_path: Path, mutate: Callable[[dict], None], fragments: tuple[str, ...]
) -> None:
    path = broken_topology(tmp_path, mutate)
    with pytest.raises(ScenarioError) as info:
        load_topology(path)
    assert_names(str(info.value), str(path), *fragments)
    # the same file referenced from a scenario fails the same way
    sc = valid_scenario()
    sc["topology"] = str(path)
    assert_names(load_error(write_yaml(tmp_path / "s.yaml", sc)), *fragments)


def test_missing_topology_for_load_topology(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="file not found"):
        load_topology(tmp_path / "absent.yaml")


# -------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h30m", 9000.0),
        ("1h 30m", 5400.0),
        ("1m30s", 90.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1s500ms", 1.5),
        ("1.5h", 5400.0),
        ("  45s ", 45.0),
        ("90", 90.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("0s", 0.0),
        (90, 90.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration_good(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "5 parsecs",
        "1x",
        "h",
        "1h30",
        "s1",
        "1.h",
        "-5m",
        "1h-5m",
        "one hour",
        "5 s s",
        "inf",
        "nan",
        "",
        "   ",
        None,
        True,
        False,
        [1],
        {"h": 1},
    ],
)
def test_parse_duration_bad(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    if isinstance(value, str) and value.strip():
        assert repr(value) in str(info.value)


@pytest.mark.parametrize("seconds", [0.5, 59, 60, 90, 3600, 5400, 86400, 90061])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
