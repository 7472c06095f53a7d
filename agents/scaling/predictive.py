"""A predictive autoscaler: forecast each HPA-managed service's demand, provision ahead of it.

Every `interval_s` it fits a forecaster on the service's arrival rate (telemetry only) and
forecasts `lookahead_s` (2 h) ahead: the plan of replicas each coming interval needs is kept
in `plans`; for acting it takes the upper prediction bound over the next start-up delay +
margin + interval, and turns it into
replicas through the capacity model (CPU and worker-pool bounds at a target utilisation), so
pods are ready before the demand arrives. It pauses the twin's HPA for the services it
controls, but never scales in on a forecast alone: a scale-in needs the reactive HPA's own
recommendation to agree (the forecast then sizes the cut). Between forecasts it checks the
observed rate against the capacity it runs every 15 s, so an unforecast surge is still met.
When its rolling forecast error (MAPE) drifts above a threshold it hands the service back to
the HPA (logged) and takes it again once the error has settled.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.forecast import registry as forecast_models
from detectors.forecast.base import Event, Forecast, Forecaster
from detectors.forecast.models import ForecastError, SeasonalNaive
from twin.control.actions import ScaleTo
from twin.control.hpa import hpa_recommendation
from twin.flow.engine import Simulation
from twin.telemetry.frame import Frame

log = logging.getLogger(__name__)

DAY_S = 86_400.0


# ------------------------------------------------------------------------ capacity model
def replicas_for_rate(
    rate: float,
    *,
    cpu_per_request_ms: float,
    cpu_limit: float,
    workers: int,
    holding_s: float,
    target: float = 0.7,
) -> int:
    """Replicas that serve `rate` at `target` utilisation of both CPU and worker pool.

    CPU: each replica does cpu_limit × target / CPU-per-request requests per second; workers:
    by Little's law rate × holding time workers are busy, and a replica has `workers`.
    """
    if rate <= 0:
        return 1
    cpu = rate * (cpu_per_request_ms / 1000.0) / (cpu_limit * target)
    pool = rate * holding_s / (workers * target)
    return max(1, math.ceil(max(cpu, pool) - 1e-9))


def make_forecaster(name: str | None, season_s: float) -> Forecaster:
    """The named forecaster for a daily season; seasonal naive over `season_s` otherwise.

    Seasonal naive needs only one season of history, which is all the scaler has on the
    day it takes over; a named model that needs more falls back to it until it can fit.
    """
    if name and season_s == DAY_S:
        return forecast_models.make_forecaster(name)
    return SeasonalNaive(season_s, min_periods=1)


# ----------------------------------------------------------------------------- the scaler
@dataclass
class _Managed:
    """Per-service state: the binned rate history, pending forecasts, control status."""

    index: int
    name: str
    spec: object  # the topology's Service
    bins: list[float] = field(default_factory=list)
    acc: float = 0.0
    acc_n: int = 0
    hold_acc: float = 0.0
    hold_n: int = 0
    holding_s: float = 0.0
    pending: dict[int, float] = field(default_factory=dict)  # bin index -> forecast mean
    errors: deque = field(default_factory=lambda: deque(maxlen=6))
    active: bool = False
    fallback: bool = False
    target_replicas: int = 0
    hpa_recs: deque = field(default_factory=deque)  # (time, recommendation)


class PredictiveScaler:
    """Drives a Simulation frame by frame: `observe(frame)` after each tick, or `run()`."""

    def __init__(
        self,
        sim: Simulation,
        *,
        interval_s: float = 300.0,
        margin_s: float = 120.0,
        lookahead_s: float = 7200.0,
        target: float = 0.7,
        level: float = 0.9,
        season_s: float = DAY_S,
        mape_threshold: float = 0.3,
        mape_window: int = 6,
        forecaster: str | None = None,
        services: Sequence[str] | None = None,
        forecaster_factory: Callable[[], Forecaster] | None = None,
    ) -> None:
        """Stores parameters; the scaler takes control of a service once one season of its
        history exists (before that the HPA runs it)."""
        self.sim = sim
        self.interval_s = interval_s
        self.margin_s = margin_s
        self.lookahead_s = lookahead_s
        # each service's latest plan: the forecast upper bound and the replicas it needs over
        # the next `lookahead_s` (hours ahead, for capacity planning and the report)
        self.plans: dict[str, dict] = {}
        self.target = target
        self.level = level
        # the forecaster sees one point per interval: a season is a whole number of them
        self.season_s = max(1, round(season_s / interval_s)) * interval_s
        season_s = self.season_s
        self.mape_threshold = mape_threshold
        self.factory = forecaster_factory or (lambda: make_forecaster(forecaster, season_s))
        topo = sim.scenario.topology.services
        names = list(topo)
        self.events = [
            Event(e.name, e.kind, float(e.start), float(e.start + e.duration))
            for e in sim.scenario.workload.calendar
        ]
        self.managed: list[_Managed] = []
        for i, name in enumerate(names):
            svc = topo[name]
            if svc.hpa is None or (services is not None and name not in services):
                continue
            m = _Managed(index=i, name=name, spec=svc, errors=deque(maxlen=mape_window))
            m.holding_s = svc.service_time.mean_ms / 1000.0
            self.managed.append(m)
        self.log: list[dict] = []
        self._next_sync = 0.0
        self._bin_end = interval_s

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        """Stream the whole run through the scaler."""
        for frame in self.sim.frames():
            self.observe(frame)

    def observe(self, frame: Frame) -> None:
        """Take one tick of telemetry; act at HPA sync points and at interval boundaries."""
        vals = frame.values
        a, th, inf = (frame.metrics.index(k) for k in ("arrival_rate", "throughput", "in_flight"))
        for m in self.managed:
            row = vals[m.index]
            m.acc += float(row[a])
            m.acc_n += 1
            if row[th] > 1e-9 and row[inf] > 0:
                m.hold_acc += float(row[inf] / row[th])
                m.hold_n += 1
        t = frame.time + self.sim.dt
        if t >= self._next_sync:
            self._next_sync = t + 15.0
            for m in self.managed:
                self._reactive(m, frame, t)
        if t >= self._bin_end - 1e-9:
            self._close_bin(t)
            self._bin_end += self.interval_s

    # -- pieces --------------------------------------------------------------------------
    def _spec(self, m: _Managed) -> int:
        return int(self.sim.pods.deployments[m.index].spec_replicas)

    def _reactive(self, m: _Managed, frame: Frame, t: float) -> None:
        """The HPA's recommendation from telemetry; while we control, follow it upward."""
        hpa = m.spec.hpa
        row = frame.values[m.index]
        ready = int(row[frame.metrics.index("ready_replicas")])
        util = float(row[frame.metrics.index("cpu_utilization")])
        current = self._spec(m)
        rec = hpa_recommendation(ready, util, hpa.target_cpu, hpa.tolerance, current)
        m.hpa_recs.append((t, rec))
        while m.hpa_recs and m.hpa_recs[0][0] < t - hpa.scale_down_window_s:
            m.hpa_recs.popleft()
        if m.active:
            # a forecast miss: the observed rate already needs more than we run
            rate = float(row[frame.metrics.index("arrival_rate")])
            need = min(self._replicas(m, rate), max(2 * current, current + 4), hpa.max_replicas)
            if need > current:
                self._scale(m, need, t, "reactive", rate=round(rate, 2))

    def _close_bin(self, t: float) -> None:
        for m in self.managed:
            rate = m.acc / max(m.acc_n, 1)
            m.acc, m.acc_n = 0.0, 0
            if m.hold_n:
                m.holding_s = max(m.hold_acc / m.hold_n, m.spec.service_time.mean_ms / 1000.0)
            m.hold_acc, m.hold_n = 0.0, 0
            k = len(m.bins)
            m.bins.append(rate)
            if k in m.pending:
                guess = m.pending.pop(k)
                m.errors.append(abs(rate - guess) / max(rate, 1e-6))
            self._check_drift(m, t)
            self._plan(m, t)

    def mape(self, m: _Managed) -> float | None:
        """Rolling MAPE of the last forecasts (one step ahead), None until the window fills."""
        if len(m.errors) < m.errors.maxlen:
            return None
        return float(np.mean(m.errors))

    def _check_drift(self, m: _Managed, t: float) -> None:
        err = self.mape(m)
        if err is None:
            return
        if m.active and err > self.mape_threshold:
            m.active, m.fallback = False, True
            self.sim.hpa_paused[m.index] = False
            self._record(t, m, "fallback", mape=round(err, 4))
            log.info("predictive scaler: %s back to the HPA (MAPE %.2f)", m.name, err)
        elif m.fallback and err < self.mape_threshold / 2:
            m.fallback = False
            self._record(t, m, "resume", mape=round(err, 4))

    def _plan(self, m: _Managed, t: float) -> None:
        """Forecast, convert to replicas, scale out ahead; scale in only with the HPA."""
        step = self.interval_s
        period = round(self.season_s / step)
        if len(m.bins) <= period:
            return
        lead = m.spec.startup_s + self.margin_s + step
        horizon = max(1, math.ceil(lead / step))  # what must be running by the next bin
        ahead = max(horizon, math.ceil(self.lookahead_s / step))
        times = step * np.arange(len(m.bins)) + step / 2  # bin centres, series seconds
        pred = self._forecast(times, np.asarray(m.bins), ahead)
        m.pending[len(m.bins)] = float(pred.mean[0])
        self.plans[m.name] = {
            "time": t,
            "step_s": step,
            "upper_rate": [round(float(x), 3) for x in pred.upper],
            "replicas": [self._replicas(m, float(x)) for x in pred.upper],
        }
        if m.fallback:
            return
        if not m.active:
            m.active = True
            self.sim.hpa_paused[m.index] = True
            self._record(t, m, "take_control")
        hpa = m.spec.hpa
        peak = float(np.max(pred.upper[:horizon]))
        want = self._replicas(m, peak)
        want = min(max(want, hpa.min_replicas), hpa.max_replicas)
        m.target_replicas = want
        current = self._spec(m)
        if want > current:
            self._scale(m, want, t, "forecast", rate=round(peak, 2))
        elif want < current:
            hpa_says = max((r for _, r in m.hpa_recs), default=current)
            if hpa_says < current:  # the HPA confirms the drop; the forecast sizes it
                self._scale(m, want, t, "scale_in_agreed")

    def _replicas(self, m: _Managed, rate: float) -> int:
        return replicas_for_rate(
            rate,
            cpu_per_request_ms=m.spec.cpu_per_request_ms,
            cpu_limit=m.spec.cpu_limit,
            workers=m.spec.workers,
            holding_s=m.holding_s,
            target=self.target,
        )

    def _forecast(self, times: np.ndarray, values: np.ndarray, horizon: int) -> Forecast:
        """The configured forecaster; ours when it cannot fit yet (e.g. too short a history)."""
        try:
            fc = self.factory().fit(times, values, self.events)
            return fc.predict(horizon, level=self.level, events=self.events)
        except ForecastError as exc:  # e.g. a model that needs two seasons, on day one
            log.debug("forecaster refused the history (%s); seasonal naive instead", exc)
            fc = SeasonalNaive(self.season_s, min_periods=1).fit(times, values, self.events)
            return fc.predict(horizon, level=self.level, events=self.events)

    def _scale(self, m: _Managed, replicas: int, t: float, why: str, **extra) -> None:
        before = self._spec(m)
        if replicas == before:
            return
        self.sim.act(ScaleTo(service=m.name, replicas=int(replicas)))
        self._record(t, m, "scale", reason=why, replicas_from=before, replicas_to=replicas, **extra)

    def _record(self, t: float, m: _Managed, what: str, **extra) -> None:
        self.log.append({"time": t, "service": m.name, "what": what, **extra})

    def release(self) -> None:
        """Hand every service back to the HPA (e.g. before the agent detaches)."""
        for m in self.managed:
            if m.active:
                m.active = False
                self.sim.hpa_paused[m.index] = False
