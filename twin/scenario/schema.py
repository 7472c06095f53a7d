"""Typed scenario: a topology, its workload, the faults to inject, the SLOs and the run length."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from twin.scenario.durations import parse_duration
from twin.scenario.infrastructure import Infrastructure
from twin.scenario.observe_schema import DEFAULT_MODE, ProductionTelemetry, TelemetryMode
from twin.scenario.topology import Frozen, Seconds, Topology

UNTIL_REMEDIED = "until-remedied"


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


def _fault_duration(value: Any) -> float | None:
    """Seconds, or None for `until-remedied` (written out, or the field left out)."""
    if value is None or value == UNTIL_REMEDIED:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; or {UNTIL_REMEDIED!r} for no scheduled end") from None


class _Fault(Frozen):
    """What every fault has. `duration` None (left out, or `until-remedied`): no scheduled
    end, the fault lasts until a remedy ends it (twin.control.mechanisms) or the run does.
    A fault with a duration ends at the earlier of its schedule and a successful remedy."""

    target: str
    start: Seconds
    duration: Annotated[float | None, BeforeValidator(_fault_duration)] = Field(
        default=None, gt=0, description=f"seconds; None or {UNTIL_REMEDIED!r}: no scheduled end"
    )
    name: str | None = None

    @property
    def until_remedied(self) -> bool:
        return self.duration is None


class CrashFault(_Fault):
    kind: Literal["crash"]
    share: float = Field(default=1.0, gt=0, le=1, description="share of replicas crash-looping")


class LatencyFault(_Fault):
    kind: Literal["latency"]
    factor: float = Field(default=5.0, ge=1)
    add_ms: float = Field(default=0.0, ge=0)
    network: bool = Field(
        default=False,
        description="add_ms on the service's network, as netem delays what a pod sends: "
        "each response to its callers and each of its own calls wait add_ms, its own work "
        "does not (factor still multiplies the work)",
    )


class ErrorFault(_Fault):
    kind: Literal["errors"]
    rate: float = Field(gt=0, le=1)


class BadResponseFault(_Fault):
    """A code fault that fails nothing: a method returns a wrong value, or throws an
    exception its caller catches (what a JVM agent such as ChaosBlade injects, and what
    Nezha's `return` and `exception` faults are). Requests succeed at their usual speed;
    only the faulty path's log lines show it."""

    kind: Literal["bad_response"]
    share: float = Field(default=0.5, gt=0, le=1, description="share of requests on the path")
    exception: bool = Field(
        default=False,
        description="true: the path throws and catches (ERROR with a stack); false: it "
        "returns a wrong value that a check downstream logs (WARN)",
    )


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


class NodeDownFault(_Fault):
    """`target` is a node: it stops (kernel panic, hardware, a hung kubelet)."""

    kind: Literal["node_down"]


class NoisyNeighbourFault(_Fault):
    """`target` is a node: a pod outside the topology takes `steal` of every CPU share."""

    kind: Literal["noisy_neighbour"]
    steal: float = Field(default=0.6, gt=0, lt=1, description="share of each pod's CPU taken")


class DiskPressureFault(_Fault):
    """`target` is a node: its disk is nearly full; writes (logs, temp files) block."""

    kind: Literal["disk_pressure"]
    io_ms: float = Field(default=150.0, gt=0, description="I/O wait added to every request")


class MemoryPressureFault(_Fault):
    """`target` is a node: a system daemon eats its memory; the kernel OOM-kills containers."""

    kind: Literal["memory_pressure"]
    oom_interval_s: Seconds = Field(default=90.0, gt=0, description="one OOM kill per interval")


class NicLossFault(_Fault):
    """`target` is a node: its network interface drops `loss` of the packets."""

    kind: Literal["nic_loss"]
    loss: float = Field(default=0.2, gt=0, lt=1)


class ZoneOutageFault(_Fault):
    """`target` is a zone: every node in it stops (power, cooling, the zone's network)."""

    kind: Literal["zone_outage"]


Fault = Annotated[
    CrashFault
    | LatencyFault
    | ErrorFault
    | CpuHogFault
    | BadResponseFault
    | MemoryLeakFault
    | BadDeployFault
    | DependencyOutageFault
    | NetworkPartitionFault
    | PacketLossFault
    | MisconfigurationFault
    | RetryStormFault
    | NodeDownFault
    | NoisyNeighbourFault
    | DiskPressureFault
    | MemoryPressureFault
    | NicLossFault
    | ZoneOutageFault,
    Field(discriminator="kind"),
]

FAULT_KINDS = (
    "crash",
    "latency",
    "errors",
    "cpu_hog",
    "bad_response",
    "memory_leak",
    "bad_deploy",
    "dependency_outage",
    "network_partition",
    "packet_loss",
    "misconfiguration",
    "retry_storm",
    "node_down",
    "noisy_neighbour",
    "disk_pressure",
    "memory_pressure",
    "nic_loss",
    "zone_outage",
)
NODE_FAULT_KINDS = ("node_down", "noisy_neighbour", "disk_pressure", "memory_pressure", "nic_loss")
ZONE_FAULT_KINDS = ("zone_outage",)
INFRA_FAULT_KINDS = NODE_FAULT_KINDS + ZONE_FAULT_KINDS


class Slo(Frozen):
    """Availability and latency objectives for one request class (or all of them)."""

    name: str | None = None
    request_class: str | None = Field(default=None, alias="class")
    availability: float = Field(default=0.999, gt=0, lt=1)
    latency_ms: float = Field(default=500.0, gt=0)
    percentile: float = Field(default=99.0, gt=0, lt=100)
    window_s: Seconds = Field(default=60.0, gt=0)


class Telemetry(Frozen):
    """What the run writes besides the metrics, and how the metrics are observed."""

    mode: TelemetryMode = Field(
        default=DEFAULT_MODE, description="ideal: every tick, exact; production: as scraped"
    )
    production: ProductionTelemetry = ProductionTelemetry()
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
    infrastructure: Infrastructure | None = None
