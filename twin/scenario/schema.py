"""Typed scenario: a topology, its workload, the faults to inject, the SLOs and the run length."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from twin.scenario.topology import Frozen, Seconds, Topology


class RequestClass(Frozen):
    """A kind of user request entering the system at one entry service."""

    name: str
    entry: str
    rate: float = Field(ge=0, le=1e9, description="baseline requests per second")


class FlashCrowd(Frozen):
    """An unannounced surge: not in the calendar, so forecasters cannot know it."""

    start: Seconds
    duration: Seconds = Field(gt=0)
    multiplier: float = Field(gt=0)
    ramp_s: Seconds = 60.0
    classes: list[str] | None = None


class CalendarEvent(Frozen):
    """A declared business event whose lift a forecaster may learn from past occurrences."""

    name: str
    kind: Literal["launch", "campaign", "holiday", "external"]
    start: Seconds
    duration: Seconds = Field(gt=0)
    lift: float = Field(gt=0, description="traffic multiplier while it lasts (<1 for quiet days)")
    ramp_s: Seconds = 300.0
    classes: list[str] | None = None


class Replay(Frozen):
    """A recorded rate series (CSV) that shapes the workload instead of the synthetic curve.

    Each class's `rate` multiplies the normalised series: with `normalize: mean` (or true)
    `rate` is the mean rate, with `peak` it is the peak rate, with `none` (or false) the
    recorded values are used as they are, times `rate`.
    """

    file: str
    value_column: str = "value"
    time_column: str | None = "timestamp"
    step_s: Seconds | None = Field(
        default=None, gt=0, description="sample spacing if no time column"
    )
    normalize: bool | Literal["mean", "peak", "none"] = Field(
        default=True, description="divide by the series mean (true/mean) or peak, or not"
    )

    @property
    def scale_by(self) -> str:
        """'mean', 'peak' or 'none'."""
        if self.normalize is True:
            return "mean"
        if self.normalize is False:
            return "none"
        return self.normalize


class Workload(Frozen):
    """Traffic per class: seasonality, trend, noise, flash crowds, calendar, or a replay."""

    classes: list[RequestClass] = Field(min_length=1)
    daily_amplitude: float = Field(default=0.0, ge=0, lt=1)
    weekly_amplitude: float = Field(default=0.0, ge=0, lt=1)
    peak_hour: float = Field(default=20.0, ge=0, lt=24)
    start_hour: float = Field(default=0.0, ge=0, lt=24, description="hour of day at t = 0")
    start_weekday: int = Field(default=0, ge=0, le=6, description="0 = Monday at t = 0")
    trend_per_day: float = Field(default=0.0, gt=-1, description="relative growth per day")
    noise: float = Field(default=0.05, ge=0, le=2, description="relative noise sd, per tick")
    flash_crowds: list[FlashCrowd] = Field(default_factory=list)
    calendar: list[CalendarEvent] = Field(default_factory=list)
    replay: Replay | None = None


class _Fault(Frozen):
    target: str
    start: Seconds
    duration: Seconds | None = Field(default=None, gt=0, description="None: until the run ends")
    name: str | None = None


class CrashFault(_Fault):
    kind: Literal["crash"]
    share: float = Field(default=1.0, gt=0, le=1, description="share of replicas crash-looping")


class LatencyFault(_Fault):
    kind: Literal["latency"]
    factor: float = Field(default=5.0, ge=1)
    add_ms: float = Field(default=0.0, ge=0)


class ErrorFault(_Fault):
    kind: Literal["errors"]
    rate: float = Field(gt=0, le=1)


class CpuHogFault(_Fault):
    kind: Literal["cpu_hog"]
    cores: float = Field(gt=0, description="extra CPU demand per replica")


class MemoryLeakFault(_Fault):
    kind: Literal["memory_leak"]
    mb_per_min: float = Field(gt=0)


class BadDeployFault(_Fault):
    kind: Literal["bad_deploy"]
    latency_factor: float = Field(default=1.0, ge=1)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    cpu_factor: float = Field(default=1.0, ge=1)
    mb_per_min: float = Field(default=0.0, ge=0)
    version: str = "v2"


class DependencyOutageFault(_Fault):
    kind: Literal["dependency_outage"]


class NetworkPartitionFault(_Fault):
    kind: Literal["network_partition"]
    peer: str


class PacketLossFault(_Fault):
    kind: Literal["packet_loss"]
    peer: str
    loss: float = Field(gt=0, lt=1)


class MisconfigurationFault(_Fault):
    kind: Literal["misconfiguration"]
    timeout_ms: float | None = Field(default=None, gt=0, description="outgoing call timeout")
    workers: int | None = Field(default=None, ge=1)
    queue_limit: int | None = Field(default=None, ge=0)


class RetryStormFault(_Fault):
    kind: Literal["retry_storm"]
    retries: int = Field(default=5, ge=1, le=20)
    backoff_ms: float = Field(default=0.0, ge=0)


Fault = Annotated[
    CrashFault
    | LatencyFault
    | ErrorFault
    | CpuHogFault
    | MemoryLeakFault
    | BadDeployFault
    | DependencyOutageFault
    | NetworkPartitionFault
    | PacketLossFault
    | MisconfigurationFault
    | RetryStormFault,
    Field(discriminator="kind"),
]

FAULT_KINDS = (
    "crash",
    "latency",
    "errors",
    "cpu_hog",
    "memory_leak",
    "bad_deploy",
    "dependency_outage",
    "network_partition",
    "packet_loss",
    "misconfiguration",
    "retry_storm",
)


class Slo(Frozen):
    """Availability and latency objectives for one request class (or all of them)."""

    name: str | None = None
    request_class: str | None = Field(default=None, alias="class")
    availability: float = Field(default=0.999, gt=0, lt=1)
    latency_ms: float = Field(default=500.0, gt=0)
    percentile: float = Field(default=99.0, gt=0, lt=100)
    window_s: Seconds = Field(default=60.0, gt=0)


class Telemetry(Frozen):
    """What the run writes besides the metrics."""

    plot: bool = True
    traces: bool = True
    trace_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="share of external requests traced; None: 1e-4 in flow, 1e-3 in request",
    )
    logs: bool = True
    log_info_rate: float = Field(
        default=2e-4, ge=0, le=1, description="share of served requests that log an INFO line"
    )


class Scenario(Frozen):
    """Everything a run needs; a run is a pure function of (scenario, seed, actions)."""

    name: str
    description: str = ""
    topology: Topology
    duration: Seconds = Field(gt=0)
    tick: Seconds = Field(default=1.0, gt=0, le=60)
    seed: int = Field(default=0, ge=0)
    workload: Workload
    faults: list[Fault] = Field(default_factory=list)
    slos: list[Slo] = Field(default_factory=list)
    telemetry: Telemetry = Telemetry()
