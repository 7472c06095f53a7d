"""No leftovers: every temporary measure an incident's handling took is undone when it ends.

Temporary measures hold capacity or refuse users: an entry's shedding, an opened breaker,
a failover's standby, a scale-out. They are right while an incident lasts and waste or
harm afterwards (a standby paid for all day, a service left at 48 replicas). When the last
open incident that took one has ended, it has been in place `min_hold_s` and users have
been fine for `calm_s` (health at or above `healthy`, the SLO view), it is lifted:
shedding and breakers, a failover handed back to the primary, a scale-out scaled back to
the replicas before it (for a service with an HPA, the HPA owns its size again at its next
sync: nothing to do) once the load it carries now would fit the smaller size
(`SCALE_IN_UTILIZATION`, read from telemetry), re-checked each `RECHECK_S` until then.
Shedding and breakers also expire `ttl_s` after they were applied (the refused requests
would keep their own incident open).

A lifted measure whose trouble comes back at the same service within `recur_s` only
mitigated it: `mitigated_only` tells the deciding layer so, and it tries something else.
Both operations modes use this: the simulated engineer cleans up after itself too.

`SloBurn` is the other half of knowing when an incident is over: an SLO burn alert at every
entry while users suffer, so an incident stays open after the anomaly detectors have
learnt a lasting fault's level as the new normal (and its measures stay in place).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.loop.telemetry_view import TelemetryView
from detectors.base import Alert
from twin.control.actions import Action, Failover, ForceBreaker, ScaleTo, ShedLoad

SCALE_IN_UTILIZATION = 0.6  # scale back only if the load would keep pods below this busy
RECHECK_S = 60.0

Act = Callable[[Action, str, Any, float], float | None]


@dataclass
class _Held:
    """One measure in place: what undoes it and the cases relying on it."""

    key: tuple
    undo: Action
    cases: set[str] = field(default_factory=set)
    since: float = 0.0


class Leftovers:
    """The temporary measures in place, who relies on them, and their undoing."""

    def __init__(
        self,
        view: TelemetryView,
        act: Act,
        hpa_services: Iterable[str],
        *,
        ttl_s: float = 900.0,
        recur_s: float = 900.0,
        min_hold_s: float = 600.0,
        calm_s: float = 300.0,
        healthy: float = 0.99,
    ) -> None:
        self.view = view
        self.act = act
        self.hpa = frozenset(hpa_services)
        self.ttl_s = ttl_s
        self.recur_s = recur_s
        self.min_hold_s = min_hold_s
        self.calm_s = calm_s
        self.healthy = healthy
        self._calm_since: float | None = None
        self._open: set[str] = set()
        self._ended: dict[str, Any] = {}  # incident id -> its case, once it has ended
        self.held: dict[tuple, _Held] = {}
        self.baseline: dict[str, int] = {}  # service -> replicas before the first scale-out
        self._pending_scale_in: dict[str, Any] = {}  # service -> case that lifted it
        self._lifted: list[tuple[float, str, str]] = []  # (time, service, action kind)
        self._last_check = -math.inf

    # ------------------------------------------------------------------------ taking
    def taken(self, case: Any, action: Action, at: float) -> bool:
        """Note an applied action; True if it is a temporary measure (now held)."""
        key, undo = self._measure(action)
        if key is None:
            return False
        held = self.held.get(key)
        if held is None:
            held = self.held[key] = _Held(key, undo, since=at)
        held.cases.add(case.incident.id)
        held.since = at
        if key[0] == "scale_to":
            self._pending_scale_in.pop(key[1], None)
        return True

    def _measure(self, action: Action) -> tuple[tuple | None, Action | None]:
        kind = action.kind
        if kind == "shed_load" and action.share > 0.0:  # type: ignore[attr-defined]
            return ("shed_load", action.entry), ShedLoad(action.entry, 0.0)  # type: ignore[attr-defined]
        if kind == "force_breaker" and action.state == "open":  # type: ignore[attr-defined]
            src, dst = action.source, action.target  # type: ignore[attr-defined]
            return ("force_breaker", src, dst), ForceBreaker(src, dst, "auto")
        if kind == "failover" and action.share > 0.0:  # type: ignore[attr-defined]
            return ("failover", action.service), Failover(action.service, 0.0)  # type: ignore[attr-defined]
        if kind == "scale_to":
            service = action.service  # type: ignore[attr-defined]
            if service in self.hpa:
                return None, None
            current = self.view.replicas(service)
            base = self.baseline.setdefault(service, current)
            if action.replicas > base:  # type: ignore[attr-defined]
                return ("scale_to", service), ScaleTo(service, base)
            self.baseline.pop(service, None)  # scaled back (or in) by hand: nothing held
            self.held.pop(("scale_to", service), None)
        return None, None

    def holds(self, case: Any) -> bool:
        """Whether a measure in place relies on this case."""
        return any(case.incident.id in h.cases for h in self.held.values())

    # ------------------------------------------------------------------------ ending
    def case_ended(self, case: Any, now: float, open_ids: set[str]) -> None:
        """An incident ended: what no open incident relies on any more is lifted once calm."""
        self._open = set(open_ids)
        self._ended[case.incident.id] = case

    def _lift_calm(self, now: float) -> None:
        if self._calm_since is None or now - self._calm_since < self.calm_s:
            return
        for key in list(self.held):
            held = self.held[key]
            if held.cases & self._open or now - held.since < self.min_hold_s:
                continue
            ended = [self._ended[c] for c in sorted(held.cases) if c in self._ended]
            if ended:
                self._lift(key, ended[0], now)

    def expire(self, case: Any, now: float) -> None:
        """Shedding and breakers this case took that have been in place `ttl_s`."""
        for key in list(self.held):
            held = self.held[key]
            if key[0] in ("shed_load", "force_breaker") and now - held.since >= self.ttl_s:
                if case.incident.id in held.cases:
                    self._lift(key, case, now)

    def _lift(self, key: tuple, case: Any, now: float) -> None:
        held = self.held.pop(key)
        if key[0] == "scale_to":
            self._pending_scale_in[key[1]] = case
            self._scale_in(key[1], now)
            return
        if self.act(held.undo, "revert", case, now) is not None:
            service = key[1] if key[0] != "force_breaker" else key[2]
            self._lifted.append((now, service, key[0]))

    def _scale_in(self, service: str, now: float) -> None:
        """Toward the baseline, as far as the load now carried allows."""
        case = self._pending_scale_in.get(service)
        base = self.baseline.get(service)
        if case is None or base is None:
            self._pending_scale_in.pop(service, None)
            return
        current = self.view.replicas(service)
        busy = max(
            self.view.latest(service, "cpu_utilization"),
            self.view.latest(service, "worker_utilization"),
        )
        need = math.ceil(busy * current / SCALE_IN_UTILIZATION - 1e-9) if busy > 0 else base
        target = max(base, min(current, need))
        if target < current and self.act(ScaleTo(service, target), "revert", case, now):
            self._lifted.append((now, service, "scale_to"))
        if target <= base:
            self._pending_scale_in.pop(service, None)
            self.baseline.pop(service, None)

    def tick(self, now: float, open_ids: set[str]) -> None:
        """Track calm, lift what is due, re-check the scale-ins the load held back."""
        self._open = open_ids
        if self.view.health() >= self.healthy:
            if self._calm_since is None:
                self._calm_since = now
        else:
            self._calm_since = None
        if now - self._last_check < RECHECK_S:
            return
        # the scale-ins held back before this check; one lifted now has just been sized
        # (its new size shows in the next frames, so sizing it again would repeat it)
        pending = list(self._pending_scale_in)
        self._lift_calm(now)
        self._last_check = now
        for service in pending:
            self._scale_in(service, now)

    # -------------------------------------------------------------------- recurrence
    def mitigated_only(self, services: Iterable[str], now: float) -> set[tuple[str, str]]:
        """(service, action kind) of measures lifted within `recur_s` at these services:
        the trouble came back, so they only mitigated it."""
        names = set(services)
        return {(s, k) for t, s, k in self._lifted if s in names and now - t <= self.recur_s}


class SloBurn:
    """Alerts at the entries while users are hit (health below `healthy`, or an objective
    broken) for `after_s`, again every `every_s` while it lasts: what an SLO burn alert
    pages on."""

    def __init__(
        self, entries: Iterable[str], healthy: float, after_s: float, every_s: float
    ) -> None:
        self.entries = tuple(entries)
        self.healthy = healthy
        self.after_s = after_s
        self.every_s = every_s
        self._since: float | None = None
        self._last = -math.inf

    def alerts(self, t: float, health: float, hit: bool | None = None) -> list[Alert]:
        """This tick's alerts; `hit` (default: health below `healthy`) says users are hit."""
        if not (health < self.healthy if hit is None else hit):
            self._since = None
            return []
        if self._since is None:
            self._since = t
        if t - self._since < self.after_s or t - self._last < self.every_s:
            return []
        self._last = t
        return [Alert(t, e, "slo_burn", 1.0 - health, "critical", "slo") for e in self.entries]
