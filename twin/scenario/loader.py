"""Scenario and topology files → frozen typed objects, with errors that name path and value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from twin.errors import ScenarioError
from twin.scenario.schema import INFRA_FAULT_KINDS, ZONE_FAULT_KINDS, Replay, Scenario
from twin.scenario.topology import Topology
from twin.strict import StrictFormatError, load_yaml, read_text

TOPOLOGY_DIR_NAMES = ("topologies",)


def format_location(loc: Iterable[Any]) -> str:
    """('faults', 2, 'target') -> 'faults[2].target'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _read_yaml(path: Path) -> Any:
    try:
        return load_yaml(read_text(path, "YAML file"), path)
    except StrictFormatError as exc:
        raise ScenarioError(str(exc)) from None


def _validation_message(source: str, exc: ValidationError, prefix: tuple = ()) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = list(prefix) + [p for p in err["loc"] if not _is_union_tag(p, err)]
        value = err.get("input")
        shown = "" if isinstance(value, Mapping | list) else f" (got {value!r})"
        lines.append(f"{source}: {format_location(loc)}: {err['msg']}{shown}")
    return "\n".join(lines)


def _is_union_tag(part: Any, err: Mapping) -> bool:
    """Discriminated unions add the tag to the location; users never wrote it."""
    from twin.scenario.schema import FAULT_KINDS

    return isinstance(part, str) and part in FAULT_KINDS and err["type"] != "union_tag_invalid"


def _resolve_topology(ref: str, base: Path, source: str) -> tuple[Path, Any]:
    candidates = [base / ref]
    if not ref.endswith((".yaml", ".yml")):
        candidates += [base / f"{ref}.yaml"] + [
            base / d / f"{ref}.yaml" for d in TOPOLOGY_DIR_NAMES
        ]
    for cand in candidates:
        if cand.is_file():
            return cand, _read_yaml(cand)
    raise ScenarioError(f"{source}: topology: file not found: {ref!r} (looked in {base})")


def _merge(base: Any, patch: Any) -> Any:
    """Mappings merge key by key (None deletes nothing: it sets null); anything else replaces."""
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return patch


def apply_topology_patch(topology: Mapping, patch: Any, source: str) -> dict:
    """Overlay a scenario's `topology_patch` (services by name, calls by from/to) on a topology.

    This is how a scenario varies one setting of a shared topology without copying it.
    """
    where = f"{source}: topology_patch"
    if not isinstance(patch, Mapping):
        raise ScenarioError(f"{where}: expected a mapping with 'services' and/or 'calls'")
    unknown = set(patch) - {"services", "calls", "defaults"}
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {sorted(unknown)[0]!r} (services, calls, defaults)"
        )
    out = dict(topology)
    if "defaults" in patch:
        out["defaults"] = _merge(topology.get("defaults") or {}, patch["defaults"])
    services = dict(topology.get("services") or {})
    changes = patch.get("services") or {}
    if not isinstance(changes, Mapping):
        raise ScenarioError(f"{where}.services: expected a mapping of service name to fields")
    for name, fields in changes.items():
        if name not in services:
            raise ScenarioError(f"{where}.services.{name}: unknown service {name!r}")
        if not isinstance(fields, Mapping):
            raise ScenarioError(f"{where}.services.{name}: expected a mapping of fields")
        services[name] = _merge(services[name], fields)
    out["services"] = services
    calls = [dict(c) for c in topology.get("calls") or []]
    call_changes = patch.get("calls") or []
    if not isinstance(call_changes, list):
        raise ScenarioError(f"{where}.calls: expected a list of {{from, to, ...}} entries")
    for i, change in enumerate(call_changes):
        if not isinstance(change, Mapping) or "from" not in change or "to" not in change:
            raise ScenarioError(f"{where}.calls[{i}]: needs 'from' and 'to' naming an edge")
        match = [
            c for c in calls if c.get("from") == change["from"] and c.get("to") == change["to"]
        ]
        if not match:
            raise ScenarioError(
                f"{where}.calls[{i}]: no call {change['from']!r} -> {change['to']!r} to patch"
            )
        match[0].update(_merge(match[0], dict(change)))
    out["calls"] = calls
    return out


def load_topology(path: str | Path) -> Topology:
    """A topology file on its own (used by generators and importers)."""
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    try:
        topo = Topology.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_validation_message(str(path), exc)) from None
    check_topology(topo, str(path))
    return topo


def load_scenario(
    path: str | Path, *, seed: int | None = None, duration: float | None = None
) -> Scenario:
    """Read, validate and cross-check a scenario; overrides apply before the checks."""
    path = Path(path)
    raw = _read_yaml(path)
    source = str(path)
    if not isinstance(raw, Mapping):
        raise ScenarioError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    raw = dict(raw)
    topo_ref = raw.get("topology")
    if isinstance(topo_ref, str):
        topo_path, raw["topology"] = _resolve_topology(topo_ref, path.parent, source)
        if not isinstance(raw["topology"], Mapping):
            raise ScenarioError(f"{topo_path}: expected a mapping at the top level")
    patch = raw.pop("topology_patch", None)
    if patch is not None:
        if not isinstance(raw.get("topology"), Mapping):
            raise ScenarioError(f"{source}: topology_patch: needs a topology to patch")
        raw["topology"] = apply_topology_patch(raw["topology"], patch, source)
    workload = raw.get("workload")
    if isinstance(workload, Mapping) and isinstance(workload.get("replay"), Mapping):
        replay = dict(workload["replay"])
        if isinstance(replay.get("file"), str):
            replay["file"] = str((path.parent / replay["file"]).resolve())
        raw["workload"] = {**workload, "replay": replay}
    if seed is not None:
        raw["seed"] = seed
    if duration is not None:
        raw["duration"] = duration
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_validation_message(source, exc)) from None
    check_scenario(scenario, source)
    return scenario


def check_topology(topo: Topology, source: str) -> None:
    """Cross-references inside a topology: every call names known services."""
    names = set(topo.services)
    seen: set[tuple[str, str]] = set()
    for i, call in enumerate(topo.calls):
        for field, value in (("from", call.source), ("to", call.target)):
            if value not in names:
                raise ScenarioError(f"{source}: calls[{i}].{field}: unknown service {value!r}")
        if call.source == call.target:
            raise ScenarioError(f"{source}: calls[{i}]: a service calling itself is not supported")
        if (call.source, call.target) in seen:
            raise ScenarioError(
                f"{source}: calls[{i}]: duplicate edge {call.source} -> {call.target}"
            )
        seen.add((call.source, call.target))
    for name, svc in topo.services.items():
        if svc.hpa and svc.hpa.min_replicas > svc.hpa.max_replicas:
            raise ScenarioError(
                f"{source}: services.{name}.hpa.min_replicas: {svc.hpa.min_replicas} is above "
                f"max_replicas {svc.hpa.max_replicas}"
            )


def _check_infra_target(
    fault, where: str, has_infra: bool, nodes: set[str], zones: set[str]
) -> None:
    """A node fault names a node, a zone outage a zone, of the scenario's infrastructure."""
    if not has_infra:
        raise ScenarioError(
            f"{where}.kind: {fault.kind} needs the scenario's `infrastructure` (nodes and zones)"
        )
    if fault.kind in ZONE_FAULT_KINDS:
        if fault.target not in zones:
            raise ScenarioError(
                f"{where}.target: unknown zone {fault.target!r} (zones: {', '.join(sorted(zones))})"
            )
    elif fault.target not in nodes:
        raise ScenarioError(
            f"{where}.target: unknown node {fault.target!r} (nodes: {', '.join(sorted(nodes))})"
        )


def check_scenario(scenario: Scenario, source: str) -> None:
    """Cross-references: classes, faults and SLOs name things that exist, inside the run."""
    topo = scenario.topology
    check_topology(topo, f"{source}: topology")
    names = set(topo.services)
    classes = {c.name for c in scenario.workload.classes}
    edges = {(c.source, c.target) for c in topo.calls}
    for i, cls in enumerate(scenario.workload.classes):
        if cls.entry not in names:
            raise ScenarioError(
                f"{source}: workload.classes[{i}].entry: unknown service {cls.entry!r}"
            )
    seen_classes: set[str] = set()
    for i, cls in enumerate(scenario.workload.classes):
        if cls.name in seen_classes:
            raise ScenarioError(
                f"{source}: workload.classes[{i}].name: duplicate request class "
                f"{cls.name!r} (names must be unique)"
            )
        seen_classes.add(cls.name)
    for field in ("flash_crowds", "calendar"):
        for i, item in enumerate(getattr(scenario.workload, field)):
            for name in item.classes or ():
                if name not in classes:
                    raise ScenarioError(
                        f"{source}: workload.{field}[{i}].classes: unknown request class {name!r}"
                    )
    infra = scenario.infrastructure
    nodes = {n.name for n in infra.node_list()} if infra is not None else set()
    zones = set(infra.zone_names()) if infra is not None else set()
    for i, fault in enumerate(scenario.faults):
        where = f"{source}: faults[{i}]"
        if fault.kind in INFRA_FAULT_KINDS:
            _check_infra_target(fault, where, infra is not None, nodes, zones)
        elif fault.target not in names:
            raise ScenarioError(f"{where}.target: unknown service {fault.target!r}")
        peer = getattr(fault, "peer", None)
        if peer is not None:
            if peer not in names:
                raise ScenarioError(f"{where}.peer: unknown service {peer!r}")
            if (fault.target, peer) not in edges and (peer, fault.target) not in edges:
                raise ScenarioError(
                    f"{where}.peer: no call between {fault.target!r} and {peer!r} to cut"
                )
        if fault.start >= scenario.duration:
            raise ScenarioError(
                f"{where}.start: {fault.start:g}s is outside the run "
                f"(duration {scenario.duration:g}s)"
            )
        if fault.duration is not None and fault.start + fault.duration > scenario.duration:
            raise ScenarioError(
                f"{where}.duration: ends at {fault.start + fault.duration:g}s, after the run "
                f"ends ({scenario.duration:g}s)"
            )
    for i, slo in enumerate(scenario.slos):
        if slo.request_class is not None and slo.request_class not in classes:
            raise ScenarioError(
                f"{source}: slos[{i}].class: unknown request class {slo.request_class!r}"
            )
    if scenario.workload.replay is not None:
        check_replay(scenario.workload.replay, source)


def check_replay(replay: Replay, source: str) -> None:
    """Read the replayed CSV now (columns, values, times), so a bad file fails validation
    naming the file and column instead of failing the run. The read is cached for the run."""
    from twin.scenario.workload import load_replay

    try:
        load_replay(replay)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: {exc}") from None
