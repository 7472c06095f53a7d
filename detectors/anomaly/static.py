"""The traditional baseline: static per-metric thresholds, as an SRE team configures them.

Rules in the manner of Prometheus alerting rules ("expr > threshold for: 2m"), one set per
service, with thresholds an operator would write from the service's limits and its SLOs:
p99 over the latency objective, 5xx ratio over 5% (where the service serves at least one
request a second, the usual guard on a ratio rule: at a few requests a minute one error is
a large share), CPU over 90% of the limit, memory over 90% of the limit, a queue over half
its limit. Each rule fires once per episode and repeats
while it lasts, every `repeat_s` (Alertmanager's repeat interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.base import Alert
from twin.fields import M
from twin.scenario.schema import Scenario

ERROR_RULE_MIN_RATE = 1.0  # requests/s: `... and sum(rate(requests[1m])) > 1`


@dataclass(frozen=True)
class Rule:
    metric: str
    threshold: np.ndarray  # per service
    for_s: float
    min_rate: float = 0.0  # requests/s the service must see for the rule to hold


def rules_for(scenario: Scenario) -> list[Rule]:
    """The thresholds an SRE team would set for this system (limits and SLOs only)."""
    services = list(scenario.topology.services.values())
    slo_ms = min((s.latency_ms for s in scenario.slos), default=500.0)
    cpu = np.array([0.9 * s.cpu_limit / s.cpu_request for s in services])
    mem = np.array([0.9 * s.memory_limit_mb for s in services])
    queue = np.array([0.5 * s.queue_limit for s in services])
    n = len(services)
    return [
        Rule("latency_p99_ms", np.full(n, slo_ms), 120.0),
        Rule("error_ratio", np.full(n, 0.05), 120.0, min_rate=ERROR_RULE_MIN_RATE),
        Rule("cpu_utilization", cpu, 300.0),
        Rule("memory_mb", mem, 120.0),
        Rule("queue", queue, 120.0),
    ]


class StaticThresholds:
    """Streaming evaluation of the rules on telemetry frames."""

    detector_name = "static"

    def __init__(self, services: Sequence[str], rules: list[Rule], repeat_s: float = 900.0):
        self.services = tuple(services)
        self.rules = rules
        self.repeat_s = repeat_s
        shape = (len(rules), len(self.services))
        self._since = np.full(shape, np.nan)  # when the condition began to hold
        self._last = np.full(shape, -np.inf)  # last notification of the episode

    @classmethod
    def for_scenario(cls, scenario: Scenario, names: Sequence[str]) -> StaticThresholds:
        return cls(names, rules_for(scenario))

    def get_params(self) -> dict:
        return {"rules": [(r.metric, r.for_s) for r in self.rules], "repeat_s": self.repeat_s}

    def process(self, t: float, values: np.ndarray) -> list[Alert]:
        alerts = []
        for r, rule in enumerate(self.rules):
            value = values[:, M[rule.metric]]
            hot = value > rule.threshold
            if rule.min_rate > 0:
                hot &= values[:, M["arrival_rate"]] >= rule.min_rate
            since = self._since[r]
            since[hot & np.isnan(since)] = t
            since[~hot] = np.nan
            self._last[r][~hot] = -np.inf
            firing = hot & (t - since >= rule.for_s) & (t - self._last[r] >= self.repeat_s)
            for i in np.flatnonzero(firing):
                self._last[r, i] = t
                alerts.append(
                    Alert(
                        time=t,
                        service=self.services[i],
                        signal=rule.metric,
                        score=round(float(value[i] / rule.threshold[i]), 4),
                        severity="critical",
                        detector=self.detector_name,
                    )
                )
        return alerts
