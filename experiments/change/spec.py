"""A change to a system, as a YAML file: what `firebreak validate-change` validates.

A change is a patch on top of a base scenario's topology: settings of existing services and
calls (replicas, timeouts, retries, breakers, HPA targets) as a `topology_patch` (the same
shape scenarios use), new services and new dependencies, a new version's profile for one
service relative to the running one, and a deploy plan (canary steps with bake times and
rollback criteria) to rehearse. Every field is validated at the edge, and a bad one fails
with the file, its path and its value (`change.yaml: deploy.steps[1].weight: ...`).

```yaml
name: catalog-v2
topology_patch:
  services: {productcatalogservice: {replicas: 4}}
  calls: [{from: frontend, to: productcatalogservice, timeout_ms: 500}]
add_calls: [{from: productcatalogservice, to: redis-cart}]
version: {service: productcatalogservice, latency_factor: 5}
deploy:
  steps: [{weight: 0.05, bake: 5m}, {weight: 0.25, bake: 5m}, {weight: 1.0, bake: 5m}]
  rollback: {interval: 30s, failure_limit: 2, max_p99_ratio: 1.5, max_error_ratio: 0.01}
```
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from twin.errors import FirebreakError, ScenarioError
from twin.scenario.loader import apply_topology_patch, check_topology, format_location
from twin.scenario.schema import BadDeployFault, Scenario
from twin.scenario.topology import Call, CallDefaults, Frozen, Seconds, Service, Topology
from twin.strict import StrictFormatError, load_yaml, read_text


class ChangeError(FirebreakError):
    """A change file is missing, malformed or names things the base system lacks.

    The message names the change file, the field path and the offending value.
    """


class VersionProfile(Frozen):
    """A new version of one service, relative to the one running: its own service time, its
    intrinsic errors and its CPU per request, plus a leak if it has one."""

    service: str
    name: str = "v2"
    latency_factor: float = Field(default=1.0, gt=0, description="own service time x this")
    error_rate: float = Field(default=0.0, ge=0, lt=1, description="extra error probability")
    cpu_factor: float = Field(default=1.0, gt=0, description="CPU per request x this")
    leak_mb_per_min: float = Field(default=0.0, ge=0, description="memory leak per replica")

    @property
    def is_regression(self) -> bool:
        """Better in no dimension: the only kind a canary rehearsal can play (as a bad deploy)."""
        return self.latency_factor >= 1.0 and self.cpu_factor >= 1.0

    def as_fault(self, start: float = 0.0) -> BadDeployFault:
        """The version as a bad deploy of the running one (factors must be at least 1)."""
        return BadDeployFault(
            kind="bad_deploy",
            name="new-version",
            target=self.service,
            start=start,
            latency_factor=self.latency_factor,
            error_rate=self.error_rate,
            cpu_factor=self.cpu_factor,
            mb_per_min=self.leak_mb_per_min,
            version=self.name,
        )


class Regression(Frozen):
    """A regressed version a deploy plan is rehearsed against (factors of at least 1)."""

    name: str | None = None
    latency_factor: float = Field(default=1.0, ge=1)
    error_rate: float = Field(default=0.0, ge=0, lt=1)
    cpu_factor: float = Field(default=1.0, ge=1)
    leak_mb_per_min: float = Field(default=0.0, ge=0)

    def label(self) -> str:
        if self.name:
            return self.name
        parts = []
        if self.latency_factor != 1.0:
            parts.append(f"{self.latency_factor:g}x latency")
        if self.error_rate:
            parts.append(f"{self.error_rate:.1%} errors")
        if self.cpu_factor != 1.0:
            parts.append(f"{self.cpu_factor:g}x CPU")
        if self.leak_mb_per_min:
            parts.append(f"leak {self.leak_mb_per_min:g} MB/min")
        return ", ".join(parts) or "no regression"

    def profile(self, service: str) -> VersionProfile:
        return VersionProfile(
            service=service,
            name=self.label(),
            latency_factor=self.latency_factor,
            error_rate=self.error_rate,
            cpu_factor=self.cpu_factor,
            leak_mb_per_min=self.leak_mb_per_min,
        )


class CanaryStep(Frozen):
    """Send `weight` of the service's calls to the new version, then watch for `bake`."""

    weight: float = Field(gt=0, le=1)
    bake: Seconds = Field(default=300.0, gt=0)


class RollbackCriteria(Frozen):
    """Automatic analysis during a canary (Flagger/Argo Rollouts style): every `interval`,
    the service's p99 and error ratio over the interval are checked; at `failure_limit`
    failed checks traffic goes back to the stable version over `rollback_s`."""

    interval: Seconds = Field(default=30.0, gt=0)
    failure_limit: int = Field(default=2, ge=1)
    max_p99_ratio: float | None = Field(
        default=1.5, gt=1, description="p99 over its level before the canary began"
    )
    max_p99_ms: float | None = Field(default=None, gt=0)
    max_error_ratio: float | None = Field(default=0.01, gt=0, lt=1)
    rollback_s: Seconds = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _some_check(self) -> RollbackCriteria:
        if self.max_p99_ratio is None and self.max_p99_ms is None and self.max_error_ratio is None:
            raise ValueError("needs at least one of max_p99_ratio, max_p99_ms, max_error_ratio")
        return self


class DeployPlan(Frozen):
    """A progressive rollout: increasing weights ending at 1.0, and when to roll back."""

    service: str | None = Field(default=None, description="default: version.service")
    steps: list[CanaryStep] = Field(min_length=1)
    rollback: RollbackCriteria = RollbackCriteria()
    shift_s: Seconds = Field(default=0.0, description="traffic moves linearly over this")
    regressions: list[Regression] = Field(
        default_factory=list, description="also rehearse the plan against these versions"
    )

    @model_validator(mode="after")
    def _weights(self) -> DeployPlan:
        weights = [s.weight for s in self.steps]
        for i in range(1, len(weights)):
            if weights[i] <= weights[i - 1]:
                raise ValueError(
                    f"steps[{i}].weight: {weights[i]:g} does not increase on "
                    f"{weights[i - 1]:g} (weights must increase)"
                )
        if weights[-1] != 1.0:
            raise ValueError(f"steps[{len(weights) - 1}].weight: the last step must be 1.0")
        return self


class Change(Frozen):
    """One change file, validated; `apply_change` puts it on a base scenario."""

    name: str
    description: str = ""
    topology_patch: dict[str, Any] | None = None
    add_services: dict[str, Service] = Field(default_factory=dict)
    add_calls: list[Call] = Field(default_factory=list)
    version: VersionProfile | None = None
    deploy: DeployPlan | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Change:
        parts = (self.topology_patch, self.add_services, self.add_calls, self.version, self.deploy)
        if not any(parts):
            raise ValueError(
                "changes nothing: give topology_patch, add_services, add_calls, version or deploy"
            )
        return self

    @property
    def changes_system(self) -> bool:
        """False for a change that is only a deploy plan (nothing for the suite to compare)."""
        return bool(self.topology_patch or self.add_services or self.add_calls or self.version)

    def touched_services(self) -> list[str]:
        """Services the change alters directly (theirs or their outgoing calls' settings)."""
        names: list[str] = []
        patch = self.topology_patch or {}
        names += list((patch.get("services") or {}).keys())
        for call in patch.get("calls") or []:
            if isinstance(call, Mapping):
                names += [str(call.get("from")), str(call.get("to"))]
        names += list(self.add_services)
        for call in self.add_calls:
            names += [call.source, call.target]
        if self.version is not None:
            names.append(self.version.service)
        if self.deploy is not None and self.deploy.service:
            names.append(self.deploy.service)
        return list(dict.fromkeys(names))

    def deploy_service(self) -> str | None:
        if self.deploy is None:
            return None
        return self.deploy.service or (self.version.service if self.version else None)


def _message(source: str, exc: ValidationError, prefix: Iterable[Any] = ()) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [*prefix, *err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        # a model-level check names its own field path inside its message
        if msg.startswith("steps[") and ":" in msg:
            inner, msg = msg.split(":", 1)
            loc.append(inner)
            msg = msg.strip()
        value = err.get("input")
        shown = "" if isinstance(value, Mapping | list) else f" (got {value!r})"
        lines.append(f"{source}: {format_location(loc)}: {msg}{shown}")
    return "\n".join(lines)


def load_change(path: str | Path) -> Change:
    """Read and validate a change file (safe_load only); errors name the path and value."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ChangeError(f"{source}: file not found")
    try:
        raw = load_yaml(read_text(path, "change file"), source)
    except StrictFormatError as exc:
        raise ChangeError(str(exc)) from None
    return parse_change(raw, source)


def parse_change(raw: Any, source: str = "change") -> Change:
    """Validate plain data as a change (what `load_change` does after reading the file)."""
    if not isinstance(raw, Mapping):
        raise ChangeError(f"{source}: expected a mapping at the top level")
    raw = dict(raw)
    raw.setdefault("name", Path(source).stem)
    try:
        return Change.model_validate(raw)
    except ValidationError as exc:
        raise ChangeError(_message(source, exc)) from None


def _check_names(change: Change, services: Mapping[str, Any], source: str) -> None:
    for i, call in enumerate(change.add_calls):
        for fld, name in (("from", call.source), ("to", call.target)):
            if name not in services:
                raise ChangeError(f"{source}: add_calls[{i}].{fld}: unknown service {name!r}")
    if change.version is not None and change.version.service not in services:
        raise ChangeError(f"{source}: version.service: unknown service {change.version.service!r}")
    if change.deploy is not None:
        target = change.deploy_service()
        if target is None:
            raise ChangeError(f"{source}: deploy.service: needed when there is no version")
        if target not in services:
            raise ChangeError(f"{source}: deploy.service: unknown service {target!r}")


def _validate_piece(model: type[BaseModel], data: Any, source: str, prefix: tuple) -> None:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise ChangeError(_message(source, exc, prefix)) from None


def _apply_patch(topo: dict, patch: Mapping[str, Any], source: str) -> dict:
    """The scenario loader's patch, then each patched piece validated under its patch path."""
    try:
        out = apply_topology_patch(topo, patch, source)
    except ScenarioError as exc:
        raise ChangeError(str(exc)) from None
    for name in patch.get("services") or {}:
        _validate_piece(
            Service, out["services"][name], source, ("topology_patch", "services", name)
        )
    for i, change in enumerate(patch.get("calls") or []):
        edge = next(
            c for c in out["calls"] if (c["from"], c["to"]) == (change["from"], change["to"])
        )
        _validate_piece(Call, edge, source, ("topology_patch", "calls", i))
    if "defaults" in patch:
        _validate_piece(CallDefaults, out["defaults"], source, ("topology_patch", "defaults"))
    return out


def _apply_version(topo: dict, version: VersionProfile) -> None:
    svc = topo["services"][version.service]
    time = dict(svc["service_time"])
    time["mean_ms"] = time["mean_ms"] * version.latency_factor
    svc["service_time"] = time
    svc["error_rate"] = 1.0 - (1.0 - svc.get("error_rate", 0.0)) * (1.0 - version.error_rate)
    svc["cpu_per_request_ms"] = svc.get("cpu_per_request_ms", 5.0) * version.cpu_factor


def apply_change(base: Scenario, change: Change, source: str = "change") -> Topology:
    """The base scenario's topology with the change on it, validated and cross-checked.

    A version becomes the service's declared profile (own time, errors, CPU); its leak, which
    a topology cannot hold, is `version_faults`' job.
    """
    topo = copy.deepcopy(base.topology.model_dump(by_alias=True))
    services = topo["services"]
    for name, svc in change.add_services.items():
        if name in services:
            raise ChangeError(f"{source}: add_services.{name}: service {name!r} already exists")
        services[name] = svc.model_dump(by_alias=True)
    _check_names(change, services, source)
    edges = {(c["from"], c["to"]) for c in topo["calls"]}
    for i, call in enumerate(change.add_calls):
        if (call.source, call.target) in edges:
            raise ChangeError(
                f"{source}: add_calls[{i}]: {call.source} -> {call.target} already exists "
                "(change its settings under topology_patch.calls)"
            )
        topo["calls"].append(call.model_dump(by_alias=True))
        edges.add((call.source, call.target))
    if change.topology_patch:
        topo = _apply_patch(topo, change.topology_patch, source)
    if change.version is not None:
        _apply_version(topo, change.version)
    try:
        result = Topology.model_validate(topo)
    except ValidationError as exc:
        raise ChangeError(_message(f"{source} (changed topology)", exc)) from None
    try:
        check_topology(result, f"{source} (changed topology)")
    except ScenarioError as exc:
        raise ChangeError(str(exc)) from None
    return result


def version_faults(change: Change) -> list[dict]:
    """Faults the changed system always carries: the new version's leak, from the start."""
    v = change.version
    if v is None or v.leak_mb_per_min <= 0:
        return []
    return [
        {
            "kind": "memory_leak",
            "name": "new-version-leak",
            "target": v.service,
            "start": 0.0,
            "mb_per_min": v.leak_mb_per_min,
        }
    ]
