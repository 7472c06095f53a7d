"""How a run's metrics are observed: `ideal` (every tick, exact) or `production` (what a
Prometheus + cAdvisor + kube-state-metrics stack would have recorded).

The default is production-like (`DEFAULT_MODE`): real telemetry is never exact, and a
conclusion drawn on exact telemetry need not hold on real. Theory checks (queueing
formulas, flow against request fidelity) and per-tick exports ask for `ideal`.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

from prometheus_client import Histogram
from pydantic import Field, field_validator, model_validator

from twin.scenario.topology import Frozen, Seconds

TelemetryMode = Literal["ideal", "production"]
DEFAULT_MODE: TelemetryMode = "production"

# the Prometheus client libraries' default histogram buckets, in seconds (+Inf implicit)
DEFAULT_BUCKETS_S = tuple(b for b in Histogram.DEFAULT_BUCKETS if math.isfinite(b))


class Confounders(Frozen):
    """Benign happenings drawn from the scenario's seed that move metrics but hurt no SLO:
    what an RCA method must not blame. Rates are per day of simulated time."""

    deploys_per_day: float = Field(
        default=2.0, ge=0, le=1000, description="unrelated rollouts: new pods, warm-up"
    )
    batch_jobs_per_day: float = Field(
        default=4.0, ge=0, le=1000, description="cron or batch jobs: CPU and memory for minutes"
    )
    noisy_neighbours_per_day: float = Field(
        default=1.0, ge=0, le=1000, description="CPU steal that lifts latency a little"
    )
    drift_per_day: float = Field(
        default=0.03, ge=0, le=1, description="slow relative drift of memory and CPU per day"
    )


class ProductionTelemetry(Frozen):
    """Settings of production-like telemetry (used when `mode: production`)."""

    scrape_interval_s: Seconds = Field(default=15.0, gt=0, le=600)
    scrape_jitter_s: Seconds = Field(
        default=0.5, ge=0, description="uniform jitter of each scrape (< half the interval)"
    )
    missing_scrapes: float = Field(default=0.005, ge=0, lt=0.5, description="share lost")
    rate_window_s: Seconds = Field(default=60.0, gt=0, description="the [1m] of rate(...[1m])")
    step_s: Seconds = Field(default=15.0, gt=0, le=3600, description="query resolution")
    buckets_s: tuple[float, ...] = Field(default=DEFAULT_BUCKETS_S, min_length=2, max_length=64)
    pod_spread: float = Field(
        default=0.1, ge=0, lt=1, description="relative spread of load between pods"
    )
    gc_pauses_per_minute: float = Field(default=0.5, ge=0, le=60)
    gc_pause_ms: float = Field(default=60.0, gt=0, le=60_000)
    background_errors_per_s: float = Field(
        default=0.03,
        ge=0,
        le=1000,
        description="benign failed requests per service (client disconnects, probes, scanners)",
    )
    idle_cpu_cores: float = Field(
        default=0.005, ge=0, le=64, description="per pod: runtime, probes, metrics endpoint"
    )
    confounders: Confounders = Confounders()

    @field_validator("buckets_s")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(b <= 0 for b in value) or any(b >= c for b, c in itertools.pairwise(value)):
            raise ValueError("buckets must be positive and strictly increasing")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProductionTelemetry:
        if self.scrape_jitter_s >= self.scrape_interval_s / 2:
            raise ValueError(
                f"scrape_jitter_s {self.scrape_jitter_s:g} must be below half the scrape "
                f"interval ({self.scrape_interval_s:g} s)"
            )
        if self.rate_window_s < 2 * self.scrape_interval_s:
            raise ValueError(
                f"rate_window_s {self.rate_window_s:g} must hold two scrapes "
                f"(at least {2 * self.scrape_interval_s:g} s)"
            )
        return self
