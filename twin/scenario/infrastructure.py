"""Typed infrastructure: the zones and nodes a scenario's pods are scheduled onto.

Optional: a scenario without `infrastructure` runs its pods nowhere in particular (the
twin's original model, and the fastest). With it, every pod is placed on a node by a
scheduler (requests against allocatable, spread over zones then nodes), node and zone faults
hit the pods placed there, and the run writes node metrics.

Either a regular cluster (`zones` × `nodes_per_zone` nodes of one size) or an explicit
`nodes` list. Node names follow `node-<zone letter><k>` in the regular form (`node-a1`), so
they read well in RCA tables (`node-a1_cpu_cores`).
"""

from __future__ import annotations

import string

from pydantic import Field, model_validator

from twin.scenario.topology import Frozen


class NodeSpec(Frozen):
    """One node: where it is and what the scheduler may allocate on it."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9.-]*$")
    zone: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9.-]*$")
    cpu: float = Field(default=4.0, gt=0, description="allocatable cores")
    memory_mb: float = Field(default=16384.0, gt=0, description="allocatable memory")


class Infrastructure(Frozen):
    """Zones and nodes under the deployments."""

    zones: int | list[str] = Field(default=3, description="a count (zone-a, ...) or names")
    nodes_per_zone: int = Field(default=2, ge=1, le=200)
    node_cpu: float = Field(default=4.0, gt=0, description="allocatable cores per node")
    node_memory_mb: float = Field(default=16384.0, gt=0)
    nodes: list[NodeSpec] | None = Field(
        default=None, description="explicit nodes (overrides the regular layout)"
    )

    @model_validator(mode="after")
    def _check(self) -> Infrastructure:
        if isinstance(self.zones, int) and not 1 <= self.zones <= 26:
            raise ValueError(f"zones: a count must be in [1, 26], got {self.zones}")
        if isinstance(self.zones, list) and not self.zones:
            raise ValueError("zones: needs at least one zone")
        names = [n.name for n in self.node_list()]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"nodes: duplicate node name {dup!r}")
        clash = set(names) & set(self.zone_names())
        if clash:
            raise ValueError(f"nodes: {sorted(clash)[0]!r} names both a node and a zone")
        return self

    def zone_names(self) -> list[str]:
        if self.nodes is not None:
            return list(dict.fromkeys(n.zone for n in self.nodes))
        if isinstance(self.zones, int):
            return [f"zone-{string.ascii_lowercase[i]}" for i in range(self.zones)]
        return list(self.zones)

    def node_list(self) -> list[NodeSpec]:
        """Every node, zone by zone."""
        if self.nodes is not None:
            return list(self.nodes)
        out = []
        for i, zone in enumerate(self.zone_names()):
            letter = string.ascii_lowercase[i % 26]
            for k in range(1, self.nodes_per_zone + 1):
                out.append(
                    NodeSpec(
                        name=f"node-{letter}{k}",
                        zone=zone,
                        cpu=self.node_cpu,
                        memory_mb=self.node_memory_mb,
                    )
                )
        return out
