"""Typed topology: services, their resources and resilience settings, and the calls between them.

Every model is frozen and rejects unknown fields, so a typo in YAML fails loudly with its path.
"""

from __future__ import annotations

from typing import Annotated, Literal

import networkx as nx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from twin.scenario.durations import parse_duration

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


# Stated bounds, far past any real deployment: a typo (1e9 replicas) fails at once with the
# field named, instead of exhausting memory building pods
MAX_REPLICAS = 100_000
MAX_WORKERS = 100_000
MAX_QUEUE = 100_000_000


class Frozen(BaseModel):
    """Base for every scenario object: immutable, strict about unknown keys."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False
    )


class ServiceTime(Frozen):
    """A service's own processing time per request (excluding its downstream calls)."""

    dist: Literal["lognormal", "exponential", "deterministic"] = "lognormal"
    mean_ms: float = Field(gt=0)
    cv: float = Field(
        default=1.0, ge=0, description="coefficient of variation (ignored if exponential)"
    )

    @property
    def effective_cv(self) -> float:
        """The CV the distribution really has."""
        return {"exponential": 1.0, "deterministic": 0.0}.get(self.dist, self.cv)


class Retries(Frozen):
    """Client retry policy: up to `max` extra attempts with exponential back-off."""

    max: int = Field(default=0, ge=0, le=20)
    backoff_ms: float = Field(default=0.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)


class Breaker(Frozen):
    """Client-side circuit breaker on a call edge (closed → open → half-open → closed)."""

    failure_threshold: float = Field(default=0.5, gt=0, le=1)
    window_s: Seconds = 10.0
    cooldown_s: Seconds = 30.0
    min_calls: float = Field(default=20.0, ge=0, description="calls in a window before it may trip")
    half_open_share: float = Field(default=0.05, gt=0, le=1)


class Hpa(Frozen):
    """Kubernetes HorizontalPodAutoscaler on CPU utilisation of the CPU request."""

    min_replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    max_replicas: int = Field(default=10, ge=1, le=MAX_REPLICAS)
    target_cpu: float = Field(default=0.7, gt=0, le=5)
    sync_s: Seconds = 15.0
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    scale_down_window_s: Seconds = 300.0


class Service(Frozen):
    """One deployment: replicas of a pod with a worker pool, resources and limits."""

    kind: Literal["service", "store"] = "service"
    description: str = ""
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    workers: int = Field(
        default=16, ge=1, le=MAX_WORKERS, description="concurrent requests per replica"
    )
    service_time: ServiceTime
    parallel_calls: bool = Field(default=False, description="fan out to dependencies concurrently")
    cpu_per_request_ms: float = Field(default=5.0, ge=0, description="CPU-milliseconds per request")
    cpu_request: float = Field(default=0.1, gt=0, description="cores requested per replica")
    cpu_limit: float = Field(default=0.2, gt=0, description="cores allowed per replica")
    cpu_idle_cores: float = Field(
        default=0.0,
        ge=0,
        description="cores a ready replica uses with no requests (runtime threads, GC, "
        "health checks); counts against its limit and in the HPA's utilisation",
    )
    memory_base_mb: float = Field(default=50.0, ge=0)
    memory_per_request_mb: float = Field(
        default=0.1, ge=0, description="per in-flight request (buffers, a goroutine or thread)"
    )
    memory_limit_mb: float = Field(default=256.0, gt=0)
    memory_request_mb: float | None = Field(
        default=None, gt=0, description="what the scheduler reserves; None: the limit"
    )
    queue_limit: int = Field(
        default=100, ge=0, le=MAX_QUEUE, description="queued requests per replica"
    )
    startup_s: Seconds = 10.0
    error_rate: float = Field(default=0.0, ge=0, lt=1)
    hpa: Hpa | None = None

    @model_validator(mode="after")
    def _idle_below_limit(self) -> Service:
        if self.cpu_idle_cores >= self.cpu_limit:
            raise ValueError(
                f"cpu_idle_cores ({self.cpu_idle_cores:g}) must be below cpu_limit "
                f"({self.cpu_limit:g}): a replica idle at its limit could serve nothing"
            )
        return self


class CallDefaults(Frozen):
    """Client settings every call edge inherits unless it overrides them."""

    timeout_ms: float = Field(default=1000.0, gt=0)
    retries: Retries = Retries()
    breaker: Breaker | None = None


class Call(Frozen):
    """An edge caller → callee: how often, whether the caller waits, and its client settings."""

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    per_request: float = Field(default=1.0, gt=0, description="calls per caller request")
    probability: float = Field(default=1.0, gt=0, le=1)
    sync: bool = True
    required: bool = Field(default=True, description="a failed call fails the caller's request")
    timeout_ms: float | None = Field(default=None, gt=0)
    retries: Retries | None = None
    breaker: Breaker | None = None


class Topology(Frozen):
    """A service graph. Cycles are allowed (they exist in real systems)."""

    name: str
    description: str = ""
    defaults: CallDefaults = CallDefaults()
    services: dict[str, Service] = Field(min_length=1)
    calls: list[Call] = Field(default_factory=list)

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(self.services)

    def graph(self) -> nx.DiGraph:
        """The call graph with per-edge expected calls as `weight`."""
        g = nx.DiGraph()
        g.add_nodes_from(self.services)
        for call in self.calls:
            g.add_edge(call.source, call.target, weight=call.per_request * call.probability)
        return g
