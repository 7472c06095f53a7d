"""A simulated on-call engineer: the traditional-operations baseline and the approval path.

The engineer is part of the simulated world (a model of a person), not of the AI stack, so
unlike detectors it may read the run's ground truth, but only through its accuracy: with
probability `accuracy` a diagnosis finds the faulty service and the fault kind, otherwise it
blames a plausible wrong service (the loudest alerting one that is not a root, or another
alerting one) and acts on that. Every method is pure with respect to the twin: it returns
times, diagnoses, actions or approvals, and the operator decides what to do with them. All
randomness comes from the `numpy.random.Generator` given at construction, drawn in a fixed
order, so the same seed gives the same engineer.

Remedy table (`REMEDIES`): what a competent human does for a diagnosed kind, read from
the twin's fault mechanisms (`twin.control.mechanisms`, the same Kubernetes knowledge the
runbook encodes): the remedy that ends the kind, preferring the gentlest (a rolling restart
over deleting pods over a rollback), else the first that mitigates it (a leak: restart; a
network fault: fail over). So the engineer has every remedy the AI has: rollout_restart
for pod-state faults, rollback for bad deploys and misconfigurations, set_retries for a
retry storm, drain for a node (or a zone), failover for a link; scale_to for a diagnosed
overload ("traffic"); noop for a false alarm. Fallback when a failover cannot be built:
open the breaker on a caller's edge into the service.

When neither the action nor its fallback can be built (no caller or entry known), the
engineer escalates (or, where `escalate` is not a twin action, records a noop).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from agents.contracts import Candidate, Decision, IncidentView
from twin.control.actions import ACTIONS, Action, action_from_dict
from twin.control.mechanisms import MECHANISMS
from twin.errors import FirebreakError
from twin.scenario.schema import FAULT_KINDS

Shift = Literal["business_hours", "off_hours"]
SHIFTS: tuple[Shift, ...] = ("business_hours", "off_hours")

# a cascade outlives its trigger: a fault that ended this recently still explains an incident
LINGER_S = 900.0

# the order a competent human prefers among remedies that end a fault (gentlest first)
PREFERENCE = (
    "rollout_restart",
    "set_retries",
    "drain",
    "rollback",
    "restart_pods",
    "failover",
    "force_breaker",
    "shed_load",
    "scale_to",
)


def _remedy_for(kind: str) -> str:
    """The action a competent human takes for a fault of this kind (see the module doc)."""
    m = MECHANISMS[kind]
    for pool in (m.ending(), m.mitigating()):
        kinds = {r.action for r in pool}
        for action in PREFERENCE:
            if action in kinds:
                return action
    return "noop"


# diagnosed kind → the action kind a competent human reaches for first
REMEDIES: dict[str, str] = {kind: _remedy_for(kind) for kind in FAULT_KINDS}
REMEDIES["traffic"] = "scale_to"
REMEDIES["none"] = "noop"
KINDS: tuple[str, ...] = tuple(REMEDIES)

# true fault kind → action kinds a reviewer should accept as a fix (aimed at a root): what
# ends or mitigates it
FITTING: dict[str, frozenset[str]] = {
    kind: frozenset(r.action for r in m.remedies) for kind, m in MECHANISMS.items()
}
# actions that act on the system as a whole, so their target need not be the root
UNTARGETED = frozenset({"shed_load"})

# the first symptom of an incident signature → the kind a misled engineer guesses
SYMPTOM_GUESS = {
    "memory": "memory_leak",
    "saturation": "cpu_hog",
    "availability": "crash",
    "errors": "errors",
    "latency": "latency",
    "traffic": "traffic",
    "logs": "errors",
}


class OnCallError(FirebreakError):
    """An on-call profile is invalid, or the engineer was asked something it cannot answer."""


@dataclass(frozen=True)
class OnCallProfile:
    """How one on-call engineer behaves; every delay is lognormal (median, log-sd).

    Defaults describe a typical, competent engineer; rationale:
    - Acknowledging a page takes about 5 minutes in business hours (find the phone, open the
      laptop); off hours it takes `off_hours_ack_factor` times longer (asleep, commuting).
    - Fatigue: a page that carries many alerts is noisier and is read more slowly; each alert
      beyond the first adds `fatigue_per_alert` to the ack delay, up to `fatigue_cap` times.
    - Diagnosis takes about 20 minutes (dashboards, logs, recent deploys) and finds the true
      service and kind 80 % of the time; a misled engineer usually blames the loudest
      alerting service (`loudest_bias`), else another alerting one.
    - When the first fix did not help, a re-diagnosis is quicker (about 10 minutes, the
      context is loaded) and more accurate (0.9): the wrong lead has been ruled out.
    - Approving a proposed action takes about 3 minutes; a correct proposal is approved 95 %
      of the time, a wrong one is caught half the time (reviewers tend to trust a plausible
      proposal).
    - A scale-out doubles the replicas (at least one more); load shedding drops 30 % of the
      entry traffic.
    The lognormal shape fits human response times: positive, right-skewed, a long tail.
    """

    shift: Shift = "business_hours"
    ack_median_s: float = 300.0
    ack_sigma: float = 0.8
    off_hours_ack_factor: float = 3.0
    fatigue_per_alert: float = 0.02
    fatigue_cap: float = 2.0
    diagnosis_median_s: float = 1200.0
    diagnosis_sigma: float = 0.6
    accuracy: float = 0.8
    loudest_bias: float = 0.7
    rediagnosis_median_s: float = 600.0
    rediagnosis_accuracy: float = 0.9
    approval_median_s: float = 180.0
    approval_sigma: float = 0.6
    p_approve_correct: float = 0.95
    p_catch_wrong: float = 0.5
    scale_out_factor: float = 2.0
    shed_share: float = 0.3

    def __post_init__(self) -> None:
        if self.shift not in SHIFTS:
            raise OnCallError(
                f"OnCallProfile.shift: must be one of {', '.join(SHIFTS)}; got {self.shift!r}"
            )
        for fld in fields(self):
            if fld.name == "shift":
                continue
            value = getattr(self, fld.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OnCallError(f"OnCallProfile.{fld.name}: must be a number, got {value!r}")
            if not math.isfinite(value):
                raise OnCallError(f"OnCallProfile.{fld.name}: must be finite, got {value!r}")
        for name in ("ack_median_s", "diagnosis_median_s", "rediagnosis_median_s"):
            self._check(name, getattr(self, name) > 0, "must be > 0")
        self._check("approval_median_s", self.approval_median_s > 0, "must be > 0")
        for name in ("ack_sigma", "diagnosis_sigma", "approval_sigma", "fatigue_per_alert"):
            self._check(name, getattr(self, name) >= 0, "must be >= 0")
        for name in ("off_hours_ack_factor", "fatigue_cap", "scale_out_factor"):
            self._check(name, getattr(self, name) >= 1, "must be >= 1")
        for name in (
            "accuracy",
            "loudest_bias",
            "rediagnosis_accuracy",
            "p_approve_correct",
            "p_catch_wrong",
        ):
            self._check(name, 0.0 <= getattr(self, name) <= 1.0, "must be in [0, 1]")
        self._check("shed_share", 0.0 < self.shed_share <= 1.0, "must be in (0, 1]")

    def _check(self, name: str, ok: bool, rule: str) -> None:
        if not ok:
            raise OnCallError(f"OnCallProfile.{name}: {rule}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class FaultTruth:
    """One ground-truth fault as the operator reads it from labels.json.

    `peer` is the other end of a link fault (network partition, packet loss): naming either
    end counts as finding the root.
    """

    kind: str
    target: str
    start: float
    end: float
    peer: str | None = None
    others: tuple[str, ...] = ()  # more names that count as finding it (a node's zone, ...)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise OnCallError(
                f"FaultTruth.kind: unknown fault kind {self.kind!r} "
                f"(kinds: {', '.join(FAULT_KINDS)})"
            )
        if not self.end >= self.start:
            raise OnCallError(f"FaultTruth: end {self.end!r} is before start {self.start!r}")

    @property
    def roots(self) -> frozenset[str]:
        """Names (services, nodes, zones) whose naming counts as finding this fault."""
        names = {self.target, *self.others}
        if self.peer is not None:
            names.add(self.peer)
        return frozenset(names)

    def explains(self, now: float) -> bool:
        """Whether the fault has begun by `now` and ended no longer than LINGER_S before it."""
        return self.start <= now <= self.end + LINGER_S

    @classmethod
    def from_label(cls, label: Mapping[str, Any]) -> FaultTruth:
        """From one entry of labels.json's `faults` list."""
        params = label.get("params") or {}
        roots = [str(r) for r in label.get("roots") or () if r != label["target"]]
        return cls(
            kind=str(label["kind"]),
            target=str(label["target"]),
            start=float(label["start"]),
            end=float(label["end"]),
            peer=params.get("peer"),
            others=tuple(r for r in roots if r != params.get("peer")),
        )


def truths_from_labels(labels: Mapping[str, Any]) -> tuple[FaultTruth, ...]:
    """Every fault of a labels.json document."""
    return tuple(FaultTruth.from_label(label) for label in labels.get("faults", ()))


@dataclass(frozen=True)
class Diagnosis:
    """What the engineer concluded: the blamed service (None: found nothing) and kind.

    `correct` is judged against ground truth (service among the fault's roots and the kind
    right; or, with no fault to find, finding nothing); `fault` is the fault it was about.
    """

    service: str | None
    kind: str
    started_at: float
    finished_at: float
    correct: bool
    attempt: int = 1
    fault: FaultTruth | None = None


@dataclass(frozen=True)
class Approval:
    """The engineer's answer to a proposed action; `correct` says whether it fit the truth."""

    approved: bool
    at: float
    reason: str
    correct: bool


class OnCallEngineer:
    """One simulated engineer answering pages, diagnosing, fixing and reviewing proposals."""

    def __init__(self, profile: OnCallProfile, rng: np.random.Generator) -> None:
        if not isinstance(profile, OnCallProfile):
            raise OnCallError(f"OnCallEngineer: profile must be an OnCallProfile, got {profile!r}")
        if not isinstance(rng, np.random.Generator):
            raise OnCallError(
                f"OnCallEngineer: rng must be a numpy.random.Generator, got {type(rng).__name__}"
            )
        self.profile = profile
        self.rng = rng

    # ----------------------------------------------------------------------- timing
    def _delay(self, median: float, sigma: float) -> float:
        return float(self.rng.lognormal(math.log(median), sigma))

    def ack_median(self, n_alerts: int, shift: Shift | None = None) -> float:
        """The median ack delay for a page with `n_alerts` alerts (fatigue and shift)."""
        p = self.profile
        shift = p.shift if shift is None else shift
        if shift not in SHIFTS:
            raise OnCallError(f"page: shift must be one of {', '.join(SHIFTS)}; got {shift!r}")
        factor = p.off_hours_ack_factor if shift == "off_hours" else 1.0
        fatigue = min(p.fatigue_cap, 1.0 + p.fatigue_per_alert * max(0, n_alerts - 1))
        return p.ack_median_s * factor * fatigue

    def page(self, view: IncidentView, now: float, shift: Shift | None = None) -> float:
        """When the page sent at `now` is acknowledged (`shift` overrides the profile's)."""
        return now + self._delay(self.ack_median(view.n_alerts, shift), self.profile.ack_sigma)

    # -------------------------------------------------------------------- diagnosis
    def diagnose(self, view: IncidentView, truth: Sequence[FaultTruth], now: float) -> Diagnosis:
        """A first diagnosis started at `now` (after the ack)."""
        p = self.profile
        return self._diagnose(view, truth, now, p.accuracy, p.diagnosis_median_s, (), 1)

    def rediagnose(
        self, previous: Diagnosis, view: IncidentView, truth: Sequence[FaultTruth], now: float
    ) -> Diagnosis:
        """Diagnose again because the fix for `previous` did not help; a wrong lead is dropped."""
        p = self.profile
        ruled_out = () if previous.correct or previous.service is None else (previous.service,)
        return self._diagnose(
            view,
            truth,
            now,
            p.rediagnosis_accuracy,
            p.rediagnosis_median_s,
            ruled_out,
            previous.attempt + 1,
        )

    def _diagnose(
        self,
        view: IncidentView,
        truth: Sequence[FaultTruth],
        now: float,
        accuracy: float,
        median: float,
        ruled_out: Sequence[str],
        attempt: int,
    ) -> Diagnosis:
        finished = now + self._delay(median, self.profile.diagnosis_sigma)
        fault = relevant_fault(view, truth, now)
        found = bool(self.rng.random() < accuracy)
        if found:
            service, kind = (None, "none") if fault is None else (fault.target, fault.kind)
            return Diagnosis(service, kind, now, finished, True, attempt, fault)
        roots = frozenset() if fault is None else fault.roots
        guess = guess_kind(view.signature)
        suspects = [s for s in loudness_order(view) if s not in roots and s not in ruled_out]
        if suspects:
            return Diagnosis(self._blame(suspects), guess, now, finished, False, attempt, fault)
        if fault is None:  # nothing alerting to blame: the false alarm is seen through
            return Diagnosis(None, "none", now, finished, True, attempt, fault)
        # only the root is alerting: the right service, the wrong kind
        if guess == fault.kind:
            others = [k for k in KINDS if k not in (fault.kind, "none")]
            guess = others[int(self.rng.integers(len(others)))]
        return Diagnosis(fault.target, guess, now, finished, False, attempt, fault)

    def _blame(self, suspects: Sequence[str]) -> str:
        """The loudest suspect with probability `loudest_bias`, else any of them."""
        if self.rng.random() < self.profile.loudest_bias:
            return suspects[0]
        return suspects[int(self.rng.integers(len(suspects)))]

    # ----------------------------------------------------------------------- remedy
    def remedy(
        self,
        diagnosis: Diagnosis,
        replicas: Mapping[str, int],
        *,
        callers: Mapping[str, Sequence[str]] | None = None,
        entries: Sequence[str] = (),
        view: IncidentView | None = None,
    ) -> Action:
        """The action a competent human takes for the diagnosis (see the module's table).

        `replicas` sizes a scale-out; `callers` (service → services calling it) and `entries`
        let breaker and load-shedding remedies name an edge or an entry point. With no fault
        found and a `view` whose signature shows saturation or traffic, the incident is an
        overload: the engineer scales out the loudest service (capacity, not a fault).
        """
        kind, service = diagnosis.kind, diagnosis.service
        if kind == "none" and view is not None and view.top_cause is not None:
            if {"saturation", "traffic"} & set(view.signature.split("+")):
                kind, service = "traffic", view.top_cause
        primary = REMEDIES.get(kind)
        if primary is None:
            raise OnCallError(
                f"remedy: unknown diagnosed kind {kind!r} (kinds: {', '.join(KINDS)})"
            )
        if primary == "noop" or service is None:
            return action_from_dict({"action": "noop"})
        if primary == "scale_to":
            current = int(replicas.get(service, 1))
            target = max(current + 1, math.ceil(current * self.profile.scale_out_factor - 1e-9))
            return action_from_dict({"action": "scale_to", "service": service, "replicas": target})
        if primary in ("rollback", "restart_pods", "rollout_restart"):
            return action_from_dict({"action": primary, "service": service})
        if primary == "drain":
            return action_from_dict({"action": "drain", "node": service})
        if primary == "set_retries":
            return action_from_dict({"action": "set_retries", "service": service, "retries": 1})
        if primary == "failover" and "failover" in ACTIONS:
            return action_from_dict({"action": "failover", "service": service, "share": 1.0})
        if primary == "shed_load" and "shed_load" in ACTIONS and entries:
            share = self.profile.shed_share
            return action_from_dict({"action": "shed_load", "entry": entries[0], "share": share})
        upstream = sorted((callers or {}).get(service, ()))
        if upstream:
            return action_from_dict(
                {
                    "action": "force_breaker",
                    "source": upstream[0],
                    "target": service,
                    "state": "open",
                }
            )
        if "escalate" in ACTIONS:
            reason = f"no {primary} available for {kind} on {service}"
            return action_from_dict({"action": "escalate", "reason": reason, "service": service})
        return action_from_dict({"action": "noop"})

    # ----------------------------------------------------------------------- review
    def review(
        self, proposal: Decision | Candidate | Action, truth: Sequence[FaultTruth], now: float
    ) -> Approval:
        """Approve or reject a proposed action (the approval path); answered after a delay.

        A proposal is correct when it fits a live fault (`action_fits`); an escalation is
        not a fix, so it counts as wrong. An empty decision is rejected at once.
        """
        action = _proposed_action(proposal)
        if action is None:
            return Approval(False, now, "rejected: nothing was proposed", False)
        p = self.profile
        at = now + self._delay(p.approval_median_s, p.approval_sigma)
        # adding capacity is a change reviewers wave through: it can cost, it cannot break
        correct = action_fits(action, truth, now) or _adds_capacity(action)
        draw = self.rng.random()
        if correct:
            if draw < p.p_approve_correct:
                return Approval(True, at, f"approved: {action.kind} fits the fault", True)
            return Approval(False, at, f"rejected: {action.kind} fits, but was not trusted", True)
        if draw < p.p_catch_wrong:
            return Approval(False, at, f"rejected: {action.kind} does not fit the fault", False)
        return Approval(True, at, f"approved: {action.kind} looked plausible (it is wrong)", False)


# --------------------------------------------------------------------------- helpers
def relevant_fault(
    view: IncidentView, truth: Sequence[FaultTruth], now: float
) -> FaultTruth | None:
    """The fault behind an incident: one explaining `now`, preferably rooted at an alerting
    service, earliest first; None when no fault explains it (a false alarm)."""
    live = [t for t in truth if t.explains(now)]
    seen = set(view.services) | {s for s, _ in view.causes}
    if view.top_cause is not None:
        seen.add(view.top_cause)
    alerting = [t for t in live if t.roots & seen]
    pool = alerting or live
    return min(pool, key=lambda t: (t.start, t.target, t.kind)) if pool else None


def loudness_order(view: IncidentView) -> list[str]:
    """Services as loud as they look: the RCA's top cause, then by cause score, then the rest
    of the alerting services in the order the incident lists them."""
    ranked = [s for s, _ in sorted(view.causes, key=lambda c: -c[1])]
    order = ([view.top_cause] if view.top_cause else []) + ranked + list(view.services)
    return list(dict.fromkeys(order))


def guess_kind(signature: str) -> str:
    """The fault kind an engineer reads off an incident signature's first symptom."""
    first = signature.split("+", 1)[0].strip()
    return SYMPTOM_GUESS.get(first, "latency")


def action_fits(action: Action, truth: Sequence[FaultTruth], now: float) -> bool:
    """Whether the action fixes a fault explaining `now` (a noop fits only when none does)."""
    live = [t for t in truth if t.explains(now)]
    if not live:
        return action.kind == "noop"
    params = action.params()
    keys = ("service", "source", "target", "node")
    touched = {params[k] for k in keys if isinstance(params.get(k), str)}
    for fault in live:
        if action.kind not in FITTING[fault.kind]:
            continue
        if action.kind in UNTARGETED or touched & fault.roots:
            return True
    return False


def _adds_capacity(action: Action) -> bool:
    """A scale-out (scale_to reads as one: the reviewer sees the target, not the diff)."""
    return action.kind == "scale_to"


def _proposed_action(proposal: Decision | Candidate | Action) -> Action | None:
    if isinstance(proposal, Decision):
        return None if proposal.chosen is None else proposal.chosen.action
    if isinstance(proposal, Candidate):
        return proposal.action
    if isinstance(proposal, Action):
        return proposal
    raise OnCallError(
        f"review: expected a Decision, Candidate or Action, got {type(proposal).__name__}"
    )
