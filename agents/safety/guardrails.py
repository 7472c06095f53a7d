"""Guardrails: the limits every automated action passes before it touches the system.

Over 500 lines because the pre-check, its batch form for masks, the windows, the undo and
the breaker read and write the same state; split, each part would reach into the others.

Why: an operator that acts on a wrong diagnosis can turn a small incident into an outage
(restart every replica at once, scale a service to zero, act on half the fleet in a
minute). The guardrails bound what one action and a burst of actions may do, undo an
action that made health worse, and stop automation altogether (paging a human) when
actions keep failing.

All of it is pure logic over a `SystemView` and its clock (`view.now`): no twin internals,
no randomness, so a run that logs its actions replays its verdicts exactly. Actions are
handled by their `kind` string and their fields, so kinds added to `twin.control.actions` later
are judged generically (see `Guardrails.check`).

Pre-checks (`check`), in order; a verdict lists every reason, not only the first:

- `noop` and `escalate` are always allowed (escalate even while the breaker is open).
- An undo issued by `post_check` is allowed (only its targets are checked): putting back
  a setting is the safe direction, so rate limits and the breaker never block it, and it
  is not counted in the windows when recorded (with or without a check). It goes stale
  (is judged and counted as a new action) when not applied within `service_window_s`.
- While the automation breaker is open nothing else is allowed.
- A kind the guardrails do not know is refused unless listed in `allow_kinds`.
- Every service the action names (fields `service`, `entry`, `source`, `target`) must be
  in `view.services()`.
- `restart_pods`: the ready pods it takes out are at most floor(max_restart_share × live
  pods), where live = max(replicas, ready), and leave at least `min_replicas_after` ready
  (a service with no ready pod may be restarted whole: nothing serving can be lost). So a
  healthy one-replica service is never restarted automatically: scale it out first.
- `scale_to`: a scale-down never below `min_replicas_after`, a scale-up never past
  `max_replicas`, either at most `max_scale_step` replicas from the current count.
- `shed_load` share at most `max_shed_share`; `failover` share at most
  `max_failover_share`.
- `drain` (a node, or a zone: every node in it) at most `max_drains` in `window_s`: a
  drain takes a node's capacity for the rest of the run, so a run of wrong guesses must
  not empty the cluster. `rollout_restart` and `set_retries` keep capacity (surge pods, a
  smaller retry budget) and take only the rate limits.
- Rate limits over the actions recorded so far, this one included: at most `max_actions`
  in `window_s`, at most `max_services` distinct services in `window_s`, at most
  `max_actions_per_service` on any one service in `service_window_s`. An action at time t
  is inside a window of length w at time now when now - t < w.

With `clamp` on (the default) an action that is too large but still meaningful in a
smaller form is allowed as that smaller form: a restart becomes `count=` the pods allowed,
a scale stops at the bound or step, a share is cut to its maximum. `Verdict.action` is what
to apply and `Verdict.reasons` says what was cut. Rate limits are never clamped.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

from agents.contracts import SystemView
from agents.safety.guardrail_config import (
    GuardrailConfig,
    GuardrailError,
)
from agents.safety.verdict import (
    Acted,
    Verdict,
    adds_capacity,
    plain_action,
    planned_restarts,
    replace_fields,
    setting_key,
    targets,
)
from twin.control.actions import Action

__all__ = ["Guardrails", "planned_restarts"]

ALWAYS_ALLOWED = frozenset({"noop", "escalate"})
KNOWN_KINDS = frozenset(
    {
        "noop",
        "escalate",
        "scale_to",
        "restart_pods",
        "rollback",
        "force_breaker",
        "stop_fault",
        "failover",
        "shed_load",
        "drain",
        "rollout_restart",
        "set_retries",
    }
)
# kinds that set one value the guardrails can put back: kind -> (field, value before any
# action set it; None means it is read from the view at check time)
SETTINGS: dict[str, tuple[str, Any]] = {
    "scale_to": ("replicas", None),
    "force_breaker": ("state", "auto"),
    "failover": ("share", 0.0),
    "shed_load": ("share", 0.0),
}
_EPS = 1e-9
_MAX_APPLIED = 64  # applied actions remembered for post-checks


# --------------------------------------------------------------------------- guardrails
class Guardrails:
    """Pre-checks, windows, post-check undo and the automation circuit breaker.

    Call order per action: `check` (before acting, with the live view), apply
    `verdict.action`, `record` (right after applying), then, once health has had time to
    respond, `post_check`, which judges the outcome and feeds it to the breaker. Use
    `record_outcome` for outcomes judged elsewhere (an action that failed to apply, an
    incident that did not resolve); do not report the same action through both.
    """

    def __init__(self, config: GuardrailConfig | None = None) -> None:
        self.config = config if config is not None else GuardrailConfig()
        self._history: deque[Acted] = deque()
        self._failures: deque[float] = deque()
        self._streak = 0
        self._tripped_at: float | None = None
        self._page_reason: str | None = None
        self._clock = -math.inf
        self._settings: dict[tuple[Any, ...], Any] = {}
        self._snapshot: tuple[Any, Any] | None = None  # (action, prior) at the last check
        self._applied: OrderedDict[Any, tuple[Any, bool]] = OrderedDict()
        self._undos: list[tuple[Any, float]] = []  # (undo, issued at), not yet applied
        self._fresh: Any = None  # what the last check let through as a new action
        self.last_post_check: dict[str, Any] | None = None
        self.last_reset: dict[str, Any] | None = None

    # ------------------------------------------------------------------ breaker state
    @property
    def tripped(self) -> bool:
        """True while automation is stopped and a human must be paged."""
        return self._tripped_at is not None

    @property
    def page_reason(self) -> str | None:
        """Why a human is being paged (None while the breaker is closed)."""
        return self._page_reason

    def reset(self, now: float, by: str = "human") -> None:
        """A human re-arms automation after looking into the failures."""
        self._tripped_at = None
        self._page_reason = None
        self._streak = 0
        self._failures.clear()
        self._clock = max(self._clock, now)
        self.last_reset = {"time": now, "by": by}

    # ---------------------------------------------------------------------- pre-check
    def check(self, action: Action, view: SystemView) -> Verdict:
        """Decide whether `action` may be applied now, possibly in a clamped form."""
        kind = action.kind
        self._fresh = None
        if kind in ALWAYS_ALLOWED:
            return Verdict(True, action, action)
        services = tuple(view.services())
        unknown = [s for s in targets(action) if s not in services]
        missing = tuple(f"{kind}: unknown service {s!r}" for s in unknown)
        self._expire_undos(view.now)
        if any(u == action for u, _ in self._undos):
            if missing:
                return Verdict(False, action, None, missing)
            return Verdict(
                True,
                action,
                action,
                (
                    f"{kind}: undo of an action that worsened "
                    "health; exempt from limits and breaker",
                ),
            )
        if self.tripped:
            return Verdict(
                False,
                action,
                None,
                (
                    f"automation breaker open: {self._page_reason}; only escalate or noop "
                    "until a human resets it",
                ),
            )
        if not self._judged(kind):
            return Verdict(
                False,
                action,
                None,
                (
                    f"{kind}: unknown action kind; the guardrails cannot bound its blast "
                    "radius (add it to allow_kinds to check it generically)",
                ),
            )
        if missing:
            return Verdict(False, action, None, missing)
        chosen, notes, refusals = self._size(action, view)
        refusals += self._rate_limits(chosen if chosen is not None else action, view.now)
        if refusals:
            return Verdict(False, action, None, tuple(refusals + notes))
        self._snapshot = (chosen, self._prior(chosen, view))
        self._fresh = chosen
        return Verdict(True, action, chosen, tuple(notes))

    def permits(self, actions: Sequence[Any], view: SystemView) -> list[bool]:
        """`check(a, view).allowed` for each action, for masks: the same rules with what
        every action shares (services, undos, window counts) worked out once and no
        reasons written. A maskable policy asks this of every action at every step."""
        services = set(view.services())
        self._expire_undos(view.now)
        undos = [u for u, _ in self._undos]
        cfg, now = self.config, view.now
        recent = [a for a in self._history if now - a.time < cfg.window_s]
        touched = {s for a in recent for s in a.services}
        per_service: dict[str, int] = {}
        for a in self._history:
            if now - a.time < cfg.service_window_s:
                for s in a.services:
                    per_service[s] = per_service.get(s, 0) + 1
        too_many = len(recent) + 1 > cfg.max_actions
        out = []
        for action in actions:
            kind = action.kind
            if kind in ALWAYS_ALLOWED:
                out.append(True)
                continue
            names = targets(action)
            known = all(s in services for s in names)
            if any(u == action for u in undos):
                out.append(known)
            elif self.tripped or not known or too_many or not self._judged(kind):
                out.append(False)
            else:
                out.append(
                    self._size(action, view)[2] == []
                    and len(touched | set(names)) <= cfg.max_services
                    and all(per_service.get(s, 0) + 1 <= cfg.max_actions_per_service for s in names)
                )
        return out

    def _judged(self, kind: str) -> bool:
        """A kind the guardrails know, or one the config lets them judge generically."""
        return kind in KNOWN_KINDS or kind in self.config.allow_kinds

    def _size(self, action: Any, view: SystemView) -> tuple[Any, list[str], list[str]]:
        """Per-kind blast-radius checks: (action to apply or None, cut notes, refusals)."""
        kind = action.kind
        if kind == "restart_pods":
            return self._size_restart(action, view)
        if kind == "scale_to":
            return self._size_scale(action, view)
        if kind == "shed_load":
            return self._size_share(action, self.config.max_shed_share, "max_shed_share")
        if kind == "failover":
            return self._size_share(action, self.config.max_failover_share, "max_failover_share")
        if kind == "drain":
            cfg = self.config
            done = sum(
                1 for a in self._history if a.kind == "drain" and view.now - a.time < cfg.window_s
            )
            if done + 1 > cfg.max_drains:
                return (
                    None,
                    [],
                    [
                        f"drain {action.node}: {done} drains in the last {cfg.window_s:g} s "
                        f"(max_drains {cfg.max_drains})"
                    ],
                )
        return action, [], []

    def _size_restart(self, action: Any, view: SystemView) -> tuple[Any, list[str], list[str]]:
        cfg = self.config
        service = action.service
        ready = max(0, int(view.ready(service)))
        live = max(int(view.replicas(service)), ready)
        taken = min(planned_restarts(action, live), ready)
        if taken == 0:
            return action, [], []
        allowed = min(
            math.floor(cfg.max_restart_share * live + _EPS), ready - cfg.min_replicas_after
        )
        allowed = max(allowed, 0)
        if taken <= allowed:
            return action, [], []
        why = (
            f"restart_pods {service}: would take {taken} of {ready} ready pods out; at most "
            f"{allowed} (max_restart_share {cfg.max_restart_share} of {live} live pods, "
            f"min_replicas_after {cfg.min_replicas_after} ready)"
        )
        if cfg.clamp and allowed >= 1:
            cut = replace_fields(action, share=None, count=allowed)
            if cut is not None:
                return cut, [f"{why}: cut to count={allowed}"], []
        return None, [], [f"{why}; scale out first or escalate"]

    def _size_scale(self, action: Any, view: SystemView) -> tuple[Any, list[str], list[str]]:
        """Bounds apply in the direction of travel: a scale-up stops at max_replicas, a
        scale-down at min_replicas_after, either at max_scale_step; a cut never reverses
        or voids the proposal (that refuses instead)."""
        cfg = self.config
        service = action.service
        current = int(view.replicas(service))
        target = int(action.replicas)
        broken = []
        if target > current:
            bounded = min(target, cfg.max_replicas, current + cfg.max_scale_step)
            if target > cfg.max_replicas:
                broken.append(f"above max_replicas {cfg.max_replicas}")
        elif target < current:
            bounded = max(target, cfg.min_replicas_after, current - cfg.max_scale_step)
            if target < cfg.min_replicas_after:
                broken.append(f"below min_replicas_after {cfg.min_replicas_after}")
        else:
            return action, [], []
        if bounded == target:
            return action, [], []
        if abs(target - current) > cfg.max_scale_step:
            step = abs(target - current)
            broken.append(f"a step of {step} > max_scale_step {cfg.max_scale_step}")
        why = f"scale_to {service}: {current} -> {target} replicas is {' and '.join(broken)}"
        same_way = (bounded - current) * (target - current) > 0
        if cfg.clamp and same_way:
            cut = replace_fields(action, replicas=bounded)
            if cut is not None:
                return cut, [f"{why}: cut to {bounded}"], []
        return None, [], [why]

    def _size_share(self, action: Any, limit: float, name: str) -> tuple[Any, list[str], list[str]]:
        share = getattr(action, "share", None)
        if not isinstance(share, int | float) or share <= limit + _EPS:
            return action, [], []
        who = ", ".join(targets(action)) or "?"
        why = f"{action.kind} {who}: share {share} is above {name} {limit}"
        if self.config.clamp and limit > 0:
            cut = replace_fields(action, share=limit)
            if cut is not None:
                return cut, [f"{why}: cut to {limit}"], []
        return None, [], [why]

    def _rate_limits(self, action: Any, now: float) -> list[str]:
        cfg = self.config
        names = targets(action)
        recent = [a for a in self._history if now - a.time < cfg.window_s]
        out = []
        if len(recent) + 1 > cfg.max_actions:
            out.append(
                f"{action.kind}: rate limit: {len(recent)} actions in the last "
                f"{cfg.window_s:g} s (max_actions {cfg.max_actions})"
            )
        touched = {s for a in recent for s in a.services}
        if len(touched | set(names)) > cfg.max_services:
            out.append(
                f"{action.kind}: blast radius: would act on "
                f"{len(touched | set(names))} services within {cfg.window_s:g} s "
                f"(max_services {cfg.max_services}; recent: {', '.join(sorted(touched))})"
            )
        for s in names:
            n = sum(
                1 for a in self._history if s in a.services and now - a.time < cfg.service_window_s
            )
            if n + 1 > cfg.max_actions_per_service:
                out.append(
                    f"{action.kind}: rate limit on {s}: {n} actions in the last "
                    f"{cfg.service_window_s:g} s (max_actions_per_service "
                    f"{cfg.max_actions_per_service})"
                )
        return out

    # ------------------------------------------------------------------------- record
    def _prior(self, action: Any, view: SystemView) -> Any:
        """The setting an action is about to change, for its undo (None if unknown)."""
        if action.kind not in SETTINGS:
            return None
        default = SETTINGS[action.kind][1]
        if action.kind == "scale_to":
            return int(view.replicas(action.service))
        return self._settings.get(setting_key(action), default)

    def record(
        self, action: Action, view: SystemView, result: Mapping[str, Any] | None = None
    ) -> None:
        """Note an applied action (call right after applying it) in the windows.

        `result` is the apply result when the caller has it: a `<field>_from` entry there
        (e.g. `replicas_from`, `state_from`) is the most exact previous value for an undo.
        """
        now = float(view.now)
        if now < self._clock - _EPS:
            raise GuardrailError(f"record: time went backwards ({now:g} after {self._clock:g})")
        self._clock = now
        kind = action.kind
        if kind in ALWAYS_ALLOWED:
            return
        self._expire_undos(now)
        # a pending undo is recorded as one unless the last check passed it as a new action
        # (a clamped proposal can equal an undo: it was judged, so it counts)
        is_undo = action != self._fresh and any(u == action for u, _ in self._undos)
        self._fresh = None
        if is_undo:
            self._undos = [(u, t) for u, t in self._undos if u != action]
        prior = None
        if kind in SETTINGS:
            field, default = SETTINGS[kind]
            key = setting_key(action)
            if result is not None and f"{field}_from" in result:
                prior = result[f"{field}_from"]
            elif self._snapshot is not None and self._snapshot[0] == action:
                prior = self._snapshot[1]
            elif default is not None:
                prior = self._settings.get(key, default)
            if default is not None:  # replicas are read from the view, never remembered
                self._settings[key] = getattr(action, field)
        self._snapshot = None
        self._applied.pop(action, None)
        self._applied[action] = (prior, is_undo)
        while len(self._applied) > _MAX_APPLIED:
            self._applied.popitem(last=False)
        if not is_undo:
            self._history.append(Acted(now, kind, targets(action)))
        self._prune(now)

    def _expire_undos(self, now: float) -> None:
        """An undo not applied within service_window_s is stale: the system moved on."""
        keep = self.config.service_window_s
        self._undos = [(u, t) for u, t in self._undos if now - t < keep]

    def _prune(self, now: float) -> None:
        horizon = max(self.config.window_s, self.config.service_window_s)
        while self._history and now - self._history[0].time >= horizon:
            self._history.popleft()
        if self.config.breaker_window_s is not None:
            while self._failures and now - self._failures[0] >= self.config.breaker_window_s:
                self._failures.popleft()

    # --------------------------------------------------------------------- post-check
    def worsened(self, before_health: float, after_health: float) -> bool:
        """Health dropped by more than the tolerance."""
        return after_health < before_health - self.config.health_tolerance

    def post_check(
        self,
        action: Action,
        before_health: float,
        after_health: float,
        now: float | None = None,
        load_growth: float = 1.0,
    ) -> Action | None:
        """Judge a recorded action by health before and after; return its undo if needed.

        Worse by more than `health_tolerance` counts as a failed action for the breaker
        (whether or not an undo exists), anything else as a success. A scale-out only adds
        capacity: judged against the load it answered, a fall in health while the users'
        load (`load_growth`: entry load now over its level before the action) stands more
        than `load_tolerance` higher is the load's doing, not the action's, so it is not
        undone (that would take capacity away mid-surge) nor counted as a failure. The undo puts the
        setting back: scale_to to the replicas before, force_breaker to its state before
        (`auto` if never forced), failover/shed_load to the share before (0 if never set).
        restart_pods, rollback, stop_fault and unknown kinds have no inverse (None). The
        undo is exempt from limits and breaker in `check`; an undo is never undone in turn,
        nor counted. NaN health means no judgement: nothing is counted, None returned.
        `now` defaults to the last time the guardrails saw.
        """
        if action.kind in ALWAYS_ALLOWED:
            return None
        prior, is_undo = self._applied.pop(action, (None, False))
        if is_undo or not (math.isfinite(before_health) and math.isfinite(after_health)):
            return None
        when = float(now) if now is not None else max(self._clock, 0.0)
        worse = self.worsened(before_health, after_health)
        by_load = worse and adds_capacity(action, prior) and self.load_explains(load_growth)
        worse = worse and not by_load
        undo = None
        if worse and action.kind in SETTINGS and prior is not None:
            field, _ = SETTINGS[action.kind]
            if getattr(action, field) != prior:
                undo = replace_fields(action, **{field: prior})
        self.last_post_check = {
            "action": plain_action(action),
            "health_before": before_health,
            "health_after": after_health,
            "worsened": worse,
            "explained_by_load": by_load,
            "undo": plain_action(undo),
        }
        self.record_outcome(not worse, when, what=f"{action.kind} {', '.join(targets(action))}")
        if undo is not None:
            self._undos.append((undo, when))
            del self._undos[:-_MAX_APPLIED]
        return undo

    def load_explains(self, load_growth: float) -> bool:
        """The users' load grew past the tolerance: a fall in health may be its doing."""
        return math.isfinite(load_growth) and load_growth > 1.0 + self.config.load_tolerance

    # ------------------------------------------------------------------------ breaker
    def record_outcome(self, success: bool, now: float, what: str = "") -> bool:
        """Feed one action's outcome to the automation breaker; True if it is open now."""
        self._clock = max(self._clock, float(now))
        cfg = self.config
        if success:
            self._streak = 0
            return self.tripped
        self._streak += 1
        self._failures.append(float(now))
        self._prune(float(now))
        if self.tripped:
            return True
        if cfg.breaker_window_s is None:
            hit = self._streak >= cfg.breaker_failures
            how = f"{self._streak} consecutive failed actions"
        else:
            hit = len(self._failures) >= cfg.breaker_failures
            how = f"{len(self._failures)} failed actions within {cfg.breaker_window_s:g} s"
        if hit:
            self._tripped_at = float(now)
            last = f" (last: {what})" if what else ""
            self._page_reason = (
                f"automation breaker tripped at t={now:g}: {how}{last}; automation stopped, "
                "a human must look"
            )
        return self.tripped

    # -------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """A small JSON-ready snapshot of everything the guardrails remember (for audit)."""
        return {
            "tripped": self.tripped,
            "tripped_at": self._tripped_at,
            "page_reason": self._page_reason,
            "failure_streak": self._streak,
            "failures": list(self._failures),
            "recent": [
                {"time": a.time, "kind": a.kind, "services": list(a.services)}
                for a in self._history
            ],
            "settings": [
                {"key": list(key), "value": value} for key, value in self._settings.items()
            ],
            "pending_undos": [plain_action(u) for u, _ in self._undos],
            "last_reset": self.last_reset,
        }
