"""A predictive autoscaler that steps in only where the HPA would be too late.

The HPA is reactive: it sees load through a ~15 s metrics window, acts every 15 s, adds at
most max(2×, +4) pods a step and waits out pod start-up. Its pods run at its target share
of the CPU request, so they absorb a rise up to their saturation point while it reacts
(Online Boutique: ~2.1-2.9× the load). A rise gentler than that (real traffic ramps: at
most 8%/min) is met on time, and a forecast can only add cost. A step above that headroom
(a sale opening on a push notification) saturates the pods before new ones are ready.

Each HPA-managed service gets a streaming forecaster (detectors.forecast, default the
seasonal profile) fed its arrival rate in `interval_s` bins (telemetry only). After every
bin the scaler weighs, with a stated cost model:

- **cost of acting**: pods started ahead of the demand, (R_need − R_now) replicas for the
  lead time (start-up + margin + one bin), in replica-hours; R_need serves the forecast's
  upper bound (the `level` interval) at the HPA's own target utilisation;
- **cost of not acting**: P(demand in the lead window > `safe_share` of what the current
  pods can serve) × `violation_cost` replica-hours per SLO-violating minute × the minutes
  the HPA needs to catch up (its sync + metrics window + start-up); the probability comes
  from the forecaster's calibrated intervals at a ladder of levels.

It **takes over** (pauses the service's HPA) when not acting costs more. In control it
runs the HPA's own rule (same formula, stabilisation and step limits, from telemetry) with
the forecast's R_need as a floor, so it is never leaner than the HPA and never scales in
on a forecast alone. It **hands back** (hysteresis) once the take-over test has failed for
`hand_back_s`, the floor no longer binds and the HPA's latest recommendation would not
shrink the service at once. Where the HPA is never too late it never takes over, and the
run is the HPA's own.
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
from detectors.forecast.models import ForecastError
from twin.control.actions import ScaleTo
from twin.control.hpa import hpa_recommendation
from twin.flow.engine import Simulation
from twin.telemetry.frame import Frame

log = logging.getLogger(__name__)

DAY_S = 86_400.0
METRICS_WINDOW_S = 15.0
"""The HPA's metrics-server averaging window: part of its reaction time."""
LONG_CALM = 24
"""Calm periods after which control goes back even if the service did not shrink back."""
LEVELS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
"""Interval levels whose upper bounds give the exceedance probability ((1 − level) / 2)."""


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


def make_forecaster(name: str | None) -> Forecaster:
    """A named forecaster (default: the streaming seasonal profile)."""
    return forecast_models.make_forecaster(name or forecast_models.DEFAULT)


# ----------------------------------------------------------------------------- the scaler
@dataclass
class _Managed:
    """Per-service state: its forecaster, binned rate, HPA emulation and control status."""

    index: int
    name: str
    spec: object  # the topology's Service
    model: Forecaster
    streaming: bool
    bins: list[float] = field(default_factory=list)  # kept only for batch forecasters
    n_bins: int = 0
    acc: float = 0.0
    acc_n: int = 0
    busy_acc: float = 0.0  # requests in flight, summed over the bin's ticks
    done_acc: float = 0.0  # requests/s completed, summed likewise
    holding_s: float = 0.0
    active: bool = False
    floor: int = 0
    forecast_need: int = 0  # replicas the upper bound over the lead window needs
    floor_until: float = 0.0  # the floor holds until the rise it was set for has come
    pending: tuple[float, int, float] | None = None  # (when, replicas, until): not yet due
    calm_since: float | None = None
    size_before: int = 0  # replicas when it took control
    ready_log: deque = field(default_factory=deque)  # (time, ready replicas), last reaction
    last_outrun: float | None = None  # when demand last beat the pods ready a reaction ago
    last_rec: int = 0
    hpa_recs: deque = field(default_factory=deque)  # (time, raw recommendation)


class PredictiveScaler:
    """Drives a Simulation frame by frame: `observe(frame)` after each tick, or `run()`."""

    def __init__(
        self,
        sim: Simulation,
        *,
        interval_s: float = 300.0,
        margin_s: float = 60.0,
        lookahead_s: float = 7200.0,
        level: float = 0.9,
        violation_cost: float = 10.0,
        safe_share: float = 0.8,
        hand_back_s: float = 900.0,
        forecaster: str | None = None,
        services: Sequence[str] | None = None,
        forecaster_factory: Callable[[], Forecaster] | None = None,
        history_days: float = 14.0,
        min_history_s: float = DAY_S,
        evidence_s: float = 7 * DAY_S,
        plan_always: bool = False,
        confirm_s: float = 60.0,
    ) -> None:
        """Stores parameters. `violation_cost`: replica-hours one SLO-violating minute is
        worth; `safe_share`: the share of the pods' saturation rate counted as served;
        `history_days`: history kept for a forecaster that refits (not streaming);
        `min_history_s`: history a forecast needs before it may take control (a day);
        `evidence_s`: how long an observed outrun of the HPA counts as evidence;
        `plan_always`: forecast every bin for `plans`, even where nothing could make it act
        (by default it skips the forecast then, which is most of its cost); `confirm_s`:
        how long the HPA must have wanted fewer pods before a forecast-confirmed scale-in
        (the HPA itself waits its 5-minute stabilisation window)."""
        self.sim = sim
        self.interval_s = interval_s
        self.margin_s = margin_s
        self.lookahead_s = lookahead_s
        self.level = level
        self.violation_cost = violation_cost
        self.safe_share = safe_share
        self.hand_back_s = hand_back_s
        self.min_history_s = min_history_s
        self.evidence_s = evidence_s
        self.plan_always = plan_always
        self.confirm_s = confirm_s
        self.history_bins = max(2, round(history_days * DAY_S / interval_s))
        self.factory = forecaster_factory or (lambda: make_forecaster(forecaster))
        # each service's latest plan: the forecast upper bound and the replicas it needs over
        # the next `lookahead_s` (hours ahead, for capacity planning and the report), from
        # the last bin it forecast (every bin with `plan_always`)
        self.plans: dict[str, dict] = {}
        topo = sim.scenario.topology.services
        # bins are labelled by their end, so a forecast bin counts as in an event when it
        # overlaps its start; in learning, a bin that overlaps it at all is kept out
        self.events = [
            Event(e.name, e.kind, float(e.start), float(e.start + e.duration))
            for e in sim.scenario.workload.calendar
        ]
        learn_events = [Event(e.name, e.kind, e.start, e.end + interval_s) for e in self.events]
        self.managed: list[_Managed] = []
        for i, (name, svc) in enumerate(topo.items()):
            if svc.hpa is None or (services is not None and name not in services):
                continue
            model = self.factory()
            streaming = forecast_models.is_streaming(model)
            if streaming and hasattr(model, "declare"):
                model.declare(learn_events)
            m = _Managed(index=i, name=name, spec=svc, model=model, streaming=streaming)
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
        """Take one tick of telemetry; act at HPA sync points and at bin boundaries."""
        vals = frame.values
        a, th, inf, rd, q, sh = (
            frame.metrics.index(k)
            for k in ("arrival_rate", "throughput", "in_flight", "ready_replicas", "queue",
                      "shed_rate")
        )  # fmt: skip
        t = frame.time + self.sim.dt
        for m in self.managed:
            row = vals[m.index]
            m.acc += float(row[a])
            m.acc_n += 1
            m.busy_acc += float(row[inf])
            m.done_acc += float(row[th])
            hurt = row[q] > 1.0 or row[sh] > 0.0
            self._watch_outrun(m, t, float(row[a]), int(row[rd]), bool(hurt))
        for m in self.managed:
            if m.pending is not None and t >= m.pending[0] - 1e-9:
                _, replicas, until = m.pending
                m.pending = None
                self._set_floor(m, replicas, until)
                if m.active and replicas > self._spec(m):
                    self._scale(m, replicas, t, "forecast")
        if t >= self._next_sync - 1e-9:
            while self._next_sync <= t + 1e-9:
                self._next_sync += self._sync_s()
            for m in self.managed:
                self._sync(m, frame, t)
        if t >= self._bin_end - 1e-9:
            self._close_bin(t)
            self._bin_end += self.interval_s

    def _reaction_s(self, m: _Managed) -> float:
        """How long the HPA needs to add ready pods: metrics window, a sync, start-up."""
        return METRICS_WINDOW_S + m.spec.hpa.sync_s + m.spec.startup_s

    def _watch_outrun(self, m: _Managed, t: float, rate: float, ready: int, hurt: bool) -> None:
        """Note when demand exceeded what the pods ready one reaction time ago can serve
        and requests queued or were refused: the HPA was outrun, and it hurt, so rises on
        this service can come faster than it follows."""
        m.ready_log.append((t, ready))
        while len(m.ready_log) > 1 and m.ready_log[1][0] <= t - self._reaction_s(m):
            m.ready_log.popleft()
        if hurt and rate > self._saturation(m, m.ready_log[0][1]):
            m.last_outrun = t

    def _steps_possible(self, m: _Managed, t: float, until: float) -> bool:
        """Whether a rise may come faster than the HPA follows: it was outrun on this
        service within `evidence_s`, or a declared event opens within its reaction time
        before `until`."""
        if m.last_outrun is not None and t - m.last_outrun <= self.evidence_s:
            return True
        reaction = self._reaction_s(m)
        return any(
            t <= e.start < until and e.ramp_s <= reaction and e.lift > 1
            for e in self.sim.scenario.workload.calendar
        )

    def _sync_s(self) -> float:
        return min((m.spec.hpa.sync_s for m in self.managed), default=15.0)

    # -- the HPA's rule, from telemetry --------------------------------------------------
    def _spec(self, m: _Managed) -> int:
        return int(self.sim.pods.deployments[m.index].spec_replicas)

    def _sync(self, m: _Managed, frame: Frame, t: float) -> None:
        """Record the HPA's recommendation; in control, apply the HPA's rule over the floor."""
        hpa = m.spec.hpa
        row = frame.values[m.index]
        ready = int(row[frame.metrics.index("ready_replicas")])
        util = float(row[frame.metrics.index("cpu_utilization")])
        current = self._spec(m)
        raw = hpa_recommendation(ready, util, hpa.target_cpu, hpa.tolerance, current)
        m.last_rec = raw
        m.hpa_recs.append((t, raw))
        while m.hpa_recs and m.hpa_recs[0][0] < t - hpa.scale_down_window_s:
            m.hpa_recs.popleft()
        if not m.active:
            return
        if raw >= current:
            desired = raw
        else:
            # the HPA would shrink: after its stabilisation window, or after a short one if
            # the forecast agrees and nothing is queued (a backlog is drained first)
            stabilised = max(r for _, r in m.hpa_recs)
            recent = max(r for s, r in m.hpa_recs if s >= t - self.confirm_s)
            queued = float(row[frame.metrics.index("queue")]) > 1.0
            desired = stabilised if queued else min(stabilised, max(recent, m.forecast_need))
        if desired > current:
            desired = min(desired, max(2 * current, current + 4))
        floor = m.floor if t < m.floor_until else 0
        desired = min(max(desired, hpa.min_replicas, floor), hpa.max_replicas)
        if desired != current:
            self._scale(m, desired, t, "hpa_rule" if desired > floor else "floor")

    # -- forecasting and the take-over test ----------------------------------------------
    def _close_bin(self, t: float) -> None:
        for m in self.managed:
            rate = m.acc / max(m.acc_n, 1)
            m.acc, m.acc_n = 0.0, 0
            if m.done_acc > 1e-9:  # Little's law over the bin: time a request holds a worker
                own = m.spec.service_time.mean_ms / 1000.0
                m.holding_s = max(m.busy_acc / m.done_acc, own)
            m.busy_acc, m.done_acc = 0.0, 0.0
            m.n_bins += 1
            if m.streaming:  # a bin is labelled by its end: one overlapping an event's start
                m.model.learn_one(t, rate)  # counts as inside it (its lift is anticipated)
            else:
                m.bins.append(rate)
                del m.bins[: -self.history_bins]
            self._plan(m, t)

    def _forecasts(self, m: _Managed, horizon: int) -> list[Forecast] | None:
        """The forecast at each ladder level, or None while the forecaster cannot forecast."""
        try:
            if not m.streaming:
                if len(m.bins) < 3:
                    return None
                step = self.interval_s
                times = step * (m.n_bins - len(m.bins) + 1 + np.arange(len(m.bins)))
                m.model = self.factory().fit(times, np.asarray(m.bins), self.events)
            if hasattr(m.model, "predict_levels"):
                return m.model.predict_levels(horizon, LEVELS, self.events)
            return [m.model.predict(horizon, level=lv, events=self.events) for lv in LEVELS]
        except ForecastError as exc:  # too little history yet, or a series it cannot use
            log.debug("predictive scaler: no forecast for %s (%s)", m.name, exc)
            return None

    def _plan(self, m: _Managed, t: float) -> None:
        step = self.interval_s
        lead_s = m.spec.startup_s + self.margin_s + step
        lead = max(1, math.ceil(lead_s / step))
        ahead = max(lead, math.ceil(self.lookahead_s / step))
        steps = self._steps_possible(m, t, t + lead * step)
        if not (steps or m.active or self.plan_always):
            return  # nothing could make it act: the forecaster has learned, that is all
        ladder = self._forecasts(m, ahead)
        if ladder is None:
            if m.active:
                self._hand_back(m, t, "fallback", why="no forecast")
            return
        main = ladder[LEVELS.index(self.level)] if self.level in LEVELS else ladder[2]
        self.plans[m.name] = {
            "time": t,
            "step_s": step,
            "upper_rate": [round(float(x), 3) for x in main.upper],
            "replicas": [self._replicas(m, float(x)) for x in main.upper],
        }
        hpa = m.spec.hpa
        now = self._spec(m)
        window = main.upper[:lead]
        upper = float(np.max(window))
        need = min(max(self._replicas(m, upper), hpa.min_replicas), hpa.max_replicas)
        m.forecast_need = need
        safe = self.safe_share * self._saturation(m, now)
        p_exceed = _exceedance(ladder, lead, safe)
        # a breach lasts until the HPA has caught up, and counts in whole minutes
        catch_up_min = 1.0 + (hpa.sync_s + METRICS_WINDOW_S + m.spec.startup_s) / 60.0
        act_cost = max(need - now, 0) * lead_s / 3600.0
        wait_cost = p_exceed * self.violation_cost * catch_up_min if steps else 0.0
        # a forecaster that says it has not calibrated its intervals on its own errors yet
        # (e.g. in its first hours) may not take control: its bands are a stand-in
        trusted = getattr(m.model, "is_calibrated", lambda _: True)(lead)
        seasoned = m.n_bins * step >= self.min_history_s and trusted
        if seasoned and need > now and wait_cost > act_cost:
            m.calm_since = None
            if not m.active:
                m.active, m.size_before = True, now
                self.sim.hpa_paused[m.index] = True
                self._record(
                    t, m, "take_control", p_exceed=round(p_exceed, 4),
                    wait_cost=round(wait_cost, 3), act_cost=round(act_cost, 3),
                )  # fmt: skip
            # pods ready `margin_s` before the first bin that may exceed what we can serve,
            # or before the declared event that starts inside it
            # (the floor then holds one bin into it: by then the HPA's rule sees the demand)
            first = int(np.argmax(ladder[-1].upper[:lead] > safe))
            due = self._due(t + first * step, step)
            when = due - self.margin_s - m.spec.startup_s
            until = due + step + self._sync_s()  # past the next bin's check
            if when <= t + self.sim.dt:
                self._set_floor(m, need, until)
                self._scale(m, need, t, "forecast", rate=round(upper, 2))
            else:
                m.pending = (when, need, until)
            return
        if not m.active:
            return
        m.calm_since = t if m.calm_since is None else m.calm_since
        calm = t - m.calm_since
        # the episode is over once it has been calm a while and the service is back to its
        # size before it (or calm for LONG_CALM × as long: a lasting new level is the HPA's)
        over = now <= m.size_before or calm >= LONG_CALM * self.hand_back_s
        settled = m.pending is None and t >= m.floor_until and m.last_rec >= now
        if calm >= self.hand_back_s and over and settled:
            self._hand_back(m, t, "hand_back")

    @staticmethod
    def _set_floor(m: _Managed, replicas: int, until: float) -> None:
        if m.floor_until > until - 1e-9 and m.floor >= replicas:
            return
        m.floor, m.floor_until = max(replicas, m.floor if m.floor_until > until else 0), until

    def _due(self, start: float, step: float) -> float:
        """When demand may rise in the bin [start, start + step): a declared event that
        starts inside it says exactly when; otherwise the bin's start."""
        inside = [e.start for e in self.events if start <= e.start < start + step]
        return min(inside) if inside else start

    def _hand_back(self, m: _Managed, t: float, what: str, **extra) -> None:
        m.active, m.floor, m.calm_since, m.pending = False, 0, None, None
        self.sim.hpa_paused[m.index] = False
        self._record(t, m, what, **extra)
        log.info("predictive scaler: %s back to the HPA (%s)", m.name, what)

    # -- capacity ------------------------------------------------------------------------
    def _per_replica(self, m: _Managed) -> tuple[float, float]:
        """Requests/s one replica serves at full CPU limit and with every worker busy."""
        svc = m.spec
        cpu = svc.cpu_limit / max(svc.cpu_per_request_ms / 1000.0, 1e-12)
        pool = svc.workers / max(m.holding_s, 1e-9)
        return cpu, pool

    def _saturation(self, m: _Managed, replicas: int) -> float:
        return replicas * min(self._per_replica(m))

    def _replicas(self, m: _Managed, rate: float) -> int:
        """Replicas that serve `rate` at the HPA's own target (its share of the CPU request)."""
        svc = m.spec
        target = svc.hpa.target_cpu * svc.cpu_request / svc.cpu_limit
        return replicas_for_rate(
            rate,
            cpu_per_request_ms=svc.cpu_per_request_ms,
            cpu_limit=svc.cpu_limit,
            workers=svc.workers,
            holding_s=m.holding_s,
            target=min(target, 0.7),
        )

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
                m.active, m.floor = False, 0
                self.sim.hpa_paused[m.index] = False

    def share_in_control(self) -> dict[str, int]:
        """Take-overs per service so far (for reports)."""
        return {m.name: sum(e["what"] == "take_control" and e["service"] == m.name
                            for e in self.log) for m in self.managed}  # fmt: skip


def _exceedance(ladder: list[Forecast], lead: int, threshold: float) -> float:
    """P(peak demand over the first `lead` steps > threshold), read off the ladder.

    The upper bound of a central `level` interval is the (1 + level) / 2 quantile: the
    probability is at most (1 − level) / 2 for the widest level whose bound stays below the
    threshold (0.5 if even the median is above it, a conservative step function).
    """
    p = 1.0
    if float(np.max(ladder[0].mean[:lead])) <= threshold:
        p = 0.5
    for level, fc in zip(LEVELS, ladder, strict=True):
        if float(np.max(fc.upper[:lead])) <= threshold:
            p = min(p, (1.0 - level) / 2)
    return p
