"""The closed-loop operator: the twin's stream → detectors → correlation → RCA → remediation.

Two ways to run a system, on the same stream:

- ``traditional``: static thresholds page a simulated on-call engineer for every incident;
  the engineer acknowledges, diagnoses (right with the profile's accuracy), applies the fix
  a competent human would, and tries again if it did not help.
- ``ai``: the tiered detectors and the correlator open incidents; after `confirm_s` the RCA
  ranks causes, the runbook proposes actions, risk-aware selection picks one (dry-running it
  in a what-if fork where the rule allows) and the automation policy decides whether it runs
  on its own, waits for the engineer's approval, or goes to the engineer. Automated actions
  pass the guardrails first; each is judged after it settles (health and whether the
  incident went quiet), learned from, undone if it made health worse, and every step is
  written to the audit log. A scale-out is judged against the load it answered: while the
  users' load stands above its level before the action, its judgement waits (up to
  `load_judge_max_s`), and pages during one demand surge are one page
  (agents.loop.surge).

The operator sees frames only (telemetry) and acts only through `Simulation.act`. The one
exception is by design: the simulated engineer is part of the world, not of the AI stack,
and consults the fault schedule, but only through its diagnosis accuracy (agents.oncall).

Over 500 lines because both operations modes share one incident loop, one judge of actions
and one report.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agents.contracts import Candidate, Decision, IncidentView
from agents.deciding.analysis import IncidentAnalyst
from agents.deciding.automation import AutomationPolicy
from agents.deciding.decide import decide, record_outcome
from agents.deciding.remedy_prior import RemedyMemory
from agents.deciding.runbook import Runbook
from agents.deciding.selection import RiskAwareSelector
from agents.loop.leftovers import Leftovers, SloBurn
from agents.loop.observed_feed import ObservedFeed
from agents.loop.page_view import basic_view
from agents.loop.recording import Recording
from agents.loop.surge import SurgePages
from agents.loop.telemetry_view import SLO_ALERT_BURN, TelemetryView
from agents.loop.what_if import WhatIf
from agents.oncall import Diagnosis, FaultTruth, OnCallEngineer
from agents.safety.audit import AuditLog
from agents.safety.guardrails import Guardrails
from detectors.base import Alert
from detectors.correlation import Correlator, Incident
from detectors.rca.registry import default_method
from twin.control.actions import Action, ActionError
from twin.flow.engine import Simulation
from twin.telemetry.frame import Frame

Mode = Literal["traditional", "ai", "rl"]
# "rl": a trained policy acts on its own (through `on_frame`); the operator only detects and
# correlates, so the run is scored like the others
MODES: tuple[Mode, ...] = ("traditional", "ai", "rl")
# remedies worth a second try on the same incident: a restart's new pods may come up with
# the trouble again (twin.control.mechanisms), a second one draws afresh
REPEATABLE = frozenset({"rollout_restart", "restart_pods"})


# evidence that names a cause on its own (agents.deciding.analysis), not an anomaly score
DIRECT_EVIDENCE = frozenset(
    {"pods_missing", "change", "deploy", "retries", "node", "memory_near_limit"}
)


@dataclass(frozen=True)
class OperatorConfig:
    """Timings and limits of the loop (simulated seconds)."""

    confirm_s: float = 30.0  # an incident must last this long before the AI acts on it
    settle_s: float = 120.0  # after an action's own delay, wait this long to judge it
    quiet_s: float = 60.0  # judged a success only if the incident was quiet this long
    success_health: float = 0.99  # health at or above this counts as restored
    max_auto_attempts: int = 2  # automated tries per incident before paging
    max_human_attempts: int = 3  # diagnoses per incident before the engineer gives up
    dry_run_horizon_s: float = 300.0  # how far a what-if fork looks ahead
    dry_run: bool = True
    # temporary measures (shedding, opened breakers, failovers, scale-outs) are lifted when
    # their incident ends (agents.loop.leftovers); shedding and breakers at the latest this
    # long after they were applied (the refused requests would keep their incident open)
    mitigation_ttl_s: float = 900.0
    # a lifted measure whose trouble comes back this soon at the same service only mitigated
    recur_s: float = 900.0
    # temporary measures are lifted only after this long in place and this long of calm
    mitigation_min_hold_s: float = 600.0
    calm_s: float = 300.0
    # an automated action another incident took this recently is not repeated: its effect
    # is awaited and judged for both
    window_dedupe_s: float = 600.0
    # the AI pages (an escalation, an approval) only while users feel the incident: health
    # below success_health; otherwise it files a ticket and keeps watching
    page_on_impact_only: bool = True
    # nor act on its own on indirect evidence (an anomaly at one service) while users are
    # fine: it tickets and watches (direct evidence, DIRECT_EVIDENCE, acts at once)
    act_on_impact_only: bool = True
    # SLO burn alerts: health below success_health this long alerts at every entry (again
    # every slo_realert_s), so an incident stays open while users suffer
    slo_alert_s: float = 120.0
    slo_realert_s: float = 60.0
    # or an objective's budget burning this fast over 1 and 5 minutes (telemetry_view); an
    # incident already open pages while it burns at slo_page_burn (1: any breach)
    slo_alert_burn: float = SLO_ALERT_BURN
    slo_page_burn: float = 1.0
    # a scale-out's judgement waits this long at most while the users' load stays above
    # its level before the action (the fall in health is the load's, not the action's)
    load_judge_max_s: float = 600.0


@dataclass
class Case:
    """One incident's handling: what was tried, by whom, and where it stands."""

    incident: Incident
    state: str = "new"  # new, auto, human, resolved, closed
    auto_attempts: int = 0
    human_attempts: int = 0
    tried: list[Action] = field(default_factory=list)
    view: IncidentView | None = None
    diagnosis: Diagnosis | None = None
    human_engaged: bool = False
    tokens: set[int] = field(default_factory=set)
    ticketed: bool = False  # a non-paging ticket was filed (no user impact yet)


class Operator(Recording):
    """Drives a simulation frame by frame and runs one operations mode on it."""

    def __init__(
        self,
        sim: Simulation,
        mode: Mode,
        *,
        detector: Any,
        correlator: Correlator,
        human: OnCallEngineer,
        truth: Sequence[FaultTruth],
        analyst: IncidentAnalyst | None = None,
        runbook: Runbook | None = None,
        selector: RiskAwareSelector | None = None,
        policy: AutomationPolicy | None = None,
        guardrails: Guardrails | None = None,
        audit: AuditLog | None = None,
        config: OperatorConfig | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        feed: ObservedFeed | None = None,
        memory: RemedyMemory | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "ai" and analyst is None:  # the project's default RCA (detectors.rca.registry)
            entries = sorted({c.entry for c in sim.scenario.workload.classes})
            analyst = IncidentAnalyst(default_method(), sim.scenario.topology.graph(), entries)
        if mode == "ai" and None in (runbook, selector, policy, guardrails):
            raise ValueError("ai mode needs a runbook, a selector, a policy, guardrails")
        self.sim = sim
        self.mode = mode
        self.detector = detector
        self.correlator = correlator
        self.human = human
        self.truth = tuple(truth)
        self.analyst = analyst
        self.runbook = runbook
        self.selector = selector
        self.policy = policy
        self.guardrails = guardrails
        self.audit = audit
        self.config = config or OperatorConfig()
        self.on_frame = on_frame
        # production telemetry: the run directory's 15 s steps instead of the exact ticks
        self.feed = feed
        step = feed.step_s if feed is not None else sim.dt
        self.view = TelemetryView(sim.scenario, sim.topo.names, step)
        self.memory = memory  # incident memory: signs cases, remedy prior (remedy_prior)
        graph = sim.scenario.topology.graph()
        self.callers = {s: tuple(sorted(graph.predecessors(s))) for s in sim.topo.names}
        self.entries = tuple(sorted({c.entry for c in sim.scenario.workload.classes}))
        self.what_if = WhatIf(sim, self.view, self.config.dry_run_horizon_s)
        if self.selector is not None and self.config.dry_run and mode == "ai":
            self.selector.dry_run = self.what_if
        self.alerts: list[Alert] = []
        self.cases: dict[str, Case] = {}
        self.actions: list[dict[str, Any]] = []
        self.identifications: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.pages = 0
        self.tickets = 0
        hpa = [n for n, svc in sim.scenario.topology.services.items() if svc.hpa is not None]
        self.leftovers = Leftovers(
            self.view,
            self._act,
            hpa,
            ttl_s=self.config.mitigation_ttl_s,
            recur_s=self.config.recur_s,
            min_hold_s=self.config.mitigation_min_hold_s,
            calm_s=self.config.calm_s,
            healthy=self.config.success_health,
        )
        self._tasks: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()
        self._recurrences: set[tuple[str, str]] = set()  # mitigations learnt as such
        self._applied_at: dict[Action, float] = {}  # automated actions, when last applied
        cfg = self.config
        self.slo_burn = SloBurn(
            self.entries, cfg.success_health, cfg.slo_alert_s, cfg.slo_realert_s
        )
        self.surge_pages = SurgePages(self.view, cfg.window_dedupe_s)

    # ------------------------------------------------------------------------- the loop
    def run(self) -> None:
        """Stream the whole run through the operator."""
        for frame in self.sim.frames():
            self.step(frame)

    def step(self, frame: Frame) -> None:
        seen = [frame]
        if self.feed is not None:  # what was scraped by now; the tick's k8s events
            self.view.note_events(frame.events)
            seen = self.feed.take()
        for f in seen:
            self.view.observe(f)
            alerts = list(self.detector.process(f.time, f.values))
            alerts += self.slo_burn.alerts(
                f.time,
                self.view.health(),
                self.view.users_hit(self.config.success_health, self.config.slo_alert_burn),
            )
            for alert in alerts:
                self.alerts.append(alert)
                self.correlator.add(alert)
        self.view.clock(frame.time + self.sim.dt)
        now = self.view.now
        self.correlator.close_idle(now)
        self._run_due(now)
        self._track_incidents(now)
        self.leftovers.tick(now, {i.id for i in self.correlator.open_incidents})
        if self.on_frame is not None:
            for f in seen:
                self.on_frame(f)

    def _track_incidents(self, now: float) -> None:
        open_ids = {i.id for i in self.correlator.open_incidents}
        for incident in self.correlator.open_incidents:
            if incident.id not in self.cases:
                self.cases[incident.id] = Case(incident)
        for case in self.cases.values():
            if case.incident.id not in open_ids:  # went quiet, or merged into another
                # work already under way (a diagnosis, an action being judged) goes on: a
                # page the engineer is on is not dropped because its alerts went quiet; the
                # temporary measures taken for it are lifted (agents.loop.leftovers)
                if self.leftovers.holds(case):
                    self.leftovers.case_ended(case, now, open_ids)
                if case.state not in ("resolved", "closed"):
                    case.state = "closed"
                continue
            if case.state == "watch" and self._users_hit():
                case.state = "new"  # users feel it now: decide again, paging if need be
            if case.state != "new":
                continue
            if self.mode == "traditional":
                self._page(case, now, "static thresholds fired")
            elif self.mode == "ai" and now - case.incident.opened >= self.config.confirm_s:
                self._ai_decide(case, now)

    # -------------------------------------------------------------------------- tasks
    def _at(self, case: Case, when: float, fn: Callable[[], None]) -> None:
        token = next(self._seq)
        case.tokens.add(token)
        heapq.heappush(self._tasks, (when, token, token, fn))

    def _cancel(self, case: Case) -> None:
        self._cancelled |= case.tokens
        case.tokens.clear()

    def _run_due(self, now: float) -> None:
        while self._tasks and self._tasks[0][0] <= now + 1e-9:
            _, _, token, fn = heapq.heappop(self._tasks)
            if token in self._cancelled:
                self._cancelled.discard(token)
                continue
            fn()

    # ---------------------------------------------------------------------- AI path
    def _ai_decide(self, case: Case, now: float) -> None:
        case.state = "auto"
        view = self.analyst.analyse(case.incident, self.view)
        case.view = view
        self.identifications.append(
            {"time": now, "incident": case.incident.id, "service": view.top_cause, "by": "rca"}
        )
        self.what_if.forget()
        decision = decide(
            view, self.view.replica_map(), self.runbook, self.selector, self.policy, now
        )
        if self.memory is not None:
            self.memory.sign(case.incident.id, view, self.view)
            decision = self.memory.prefer(case.incident.id, decision, view, self._assess)
        # a measure lifted lately whose trouble came back only mitigated it: try another
        services = {*view.services, *([view.top_cause] if view.top_cause else [])}
        recurred = self.leftovers.mitigated_only(services, now)
        for key in sorted(recurred - self._recurrences):
            self._recurrences.add(key)
            record_outcome(view.signature, key[1], False, self.selector.outcomes, self.policy)
        chosen = self._untried(case, decision, recurred)
        self._follow(case, decision, chosen, now)

    def _assess(self, view: IncidentView, cand: Candidate) -> tuple[str, str]:
        ceiling = self.runbook.rule(cand.rule).max_level
        return self.policy.assess(view, cand, self.selector.outcomes, ceiling=ceiling)

    def _untried(
        self, case: Case, decision: Decision, recurred: set[tuple[str, str]] = frozenset()
    ) -> Candidate | None:
        """The best candidate not tried yet on this incident (nor lately lifted at its
        target and come back)."""
        for cand in decision.candidates:
            target = cand.action.params().get("service")
            if (target, cand.action.kind) in recurred:
                continue
            tries = case.tried.count(cand.action)
            again = cand.action.kind in REPEATABLE and tries < 2  # the trigger may recur
            if (tries == 0 or again) and cand.action.kind != "escalate":
                return cand
        return None

    def _follow(self, case: Case, decision: Decision, chosen: Candidate | None, now: float) -> None:
        level, reason = decision.level, decision.reason
        if chosen is not None and chosen is not decision.chosen:
            level, why = self.policy.assess(
                case.view,
                chosen,
                self.selector.outcomes,
                ceiling=self.runbook.rule(chosen.rule).max_level,
            )
            reason = f"{level}: {why} (the first choice was tried already). {reason}"
        if chosen is None:
            level = "escalate"
        if level != "auto" and self._ticket(case, now, f"{level}: {reason}"):
            why = f"users are fine: a ticket instead of a page ({level}). {reason}"
            self._record_decision(case, now, "ticket", chosen, why)
            return
        if level == "auto" and self._hold_without_impact(case, now, reason):
            why = f"users are fine and the evidence is indirect: watching. {reason}"
            self._record_decision(case, now, "ticket", chosen, why)
            return
        decision = Decision(
            decision.incident_id, decision.time, level, chosen, decision.candidates, reason
        )
        decision_id = self._log_decision(case, decision)
        if level == "auto":
            self._automated(case, chosen.action, "auto", decision_id, now)
        elif level == "approval":
            ack = self.human.page(case.view, now)
            self._count_page(case, now)

            def review() -> None:
                approval = self.human.review(chosen, self.truth, ack)
                self._record_approval(decision_id, approval)

                def settle() -> None:
                    if approval.approved:
                        self._automated(case, chosen.action, "approved", decision_id, approval.at)
                    else:
                        self._page(case, approval.at, "approval refused", paged_at=ack)

                self._at(case, approval.at, settle)

            self._at(case, ack, review)
        else:
            self._page(case, now, decision.reason)

    def _automated(
        self, case: Case, action: Action, by: str, decision_id: str | None, now: float
    ) -> None:
        done_at = self._applied_at.get(action)
        if done_at is not None and now - done_at < self.config.window_dedupe_s:
            # another incident of the same trouble took this very action moments ago: wait
            # for its effect and judge it here too, rather than repeat it (or be refused)
            case.tried.append(action)
            case.auto_attempts += 1
            before = self.view.health()
            wait = action.profile(self.sim).delay_s + self.config.settle_s
            judge = lambda: self._judge_auto(case, action, before, None, done_at)  # noqa: E731
            self._at(case, now + wait, judge)
            return
        verdict = self.guardrails.check(action, self.view)
        if not verdict.allowed:
            self._outcome(decision_id, now, applied=False, detail={"blocked": verdict.to_dict()})
            self._page(case, now, "guardrails refused: " + "; ".join(verdict.reasons))
            return
        applied = verdict.action
        case.tried.append(action)
        case.auto_attempts += 1
        before = self.view.health()
        result = self._act(applied, by, case, now)
        if result is None:
            self._page(case, now, "action failed to apply")
            return
        self.guardrails.record(applied, self.view)
        self._applied_at[applied] = now
        self._outcome(
            decision_id, now, applied=True, action=applied.to_dict(), health_before=before
        )
        wait = applied.profile(self.sim).delay_s + self.config.settle_s
        judge = lambda: self._judge_auto(case, applied, before, decision_id, now)  # noqa: E731
        self._at(case, now + wait, judge)

    def _judge_auto(
        self, case: Case, action: Action, before: float, decision_id: str | None, at: float
    ) -> None:
        now = self.view.now
        after = self.view.health()
        success = self._worked(case, before, after, now)
        growth = self.view.entry_growth(at)
        if (
            not success
            and action.kind == "scale_to"
            and self.guardrails.load_explains(growth)
            and now - at < self.config.load_judge_max_s
        ):  # the load it answered still stands higher: judge it once that has passed
            judge = lambda: self._judge_auto(case, action, before, decision_id, at)  # noqa: E731
            self._at(case, now + self.config.settle_s, judge)
            return
        undo = self.guardrails.post_check(action, before, after, now, load_growth=growth)
        if undo is not None:
            self._act(undo, "undo", case, now)
            self.guardrails.record(undo, self.view)
        if self.memory is not None:
            self.memory.judged(case.incident.id, action.kind, success)
        if case.view is not None:
            record_outcome(
                case.view.signature, action.kind, success, self.selector.outcomes, self.policy
            )
        self._outcome(
            decision_id,
            now,
            applied=True,
            success=success,
            action=action.to_dict(),
            health_before=before,
            health_after=after,
            undo=None if undo is None else undo.to_dict(),
        )
        if success:
            case.state = "resolved"
            return
        if self.guardrails.tripped:
            self._page(case, now, self.guardrails.page_reason or "automation breaker open")
        elif case.auto_attempts < self.config.max_auto_attempts:
            self._ai_decide(case, now)
        else:
            self._page(case, now, f"{case.auto_attempts} automated actions did not help")

    # ------------------------------------------------------------------- human path
    def _basic_view(self, case: Case, now: float) -> IncidentView:
        return basic_view(case.incident, now)

    def _users_hit(self) -> bool:
        return self.view.users_hit(self.config.success_health, self.config.slo_page_burn)

    def _hold_without_impact(self, case: Case, now: float, reason: str) -> bool:
        """No automated action while users are fine on indirect evidence alone (an anomaly
        at one service: on production telemetry mostly scrape noise, GC pauses, bucket
        quantiles), where health could not judge it either; direct evidence (pods missing,
        a change, retries multiplying, memory near its limit, a node's own trouble) still
        acts. The incident is
        ticketed and decided again once users are hit. True if held."""
        if self.mode != "ai" or not self.config.act_on_impact_only or self._users_hit():
            return False
        view = case.view
        if view is None or view.cause_kind != "service" or DIRECT_EVIDENCE & set(view.evidence):
            return False
        return self._ticket(case, now, f"auto held: {reason}")

    def _ticket(self, case: Case, now: float, reason: str) -> bool:
        """AI operations page only while users feel the incident (health, objectives);
        otherwise file one ticket, watch, and decide again. True if ticketed, not paged."""
        if self.mode != "ai" or not self.config.page_on_impact_only or case.human_engaged:
            return False
        if self._users_hit():
            return False
        case.state = "watch"
        if not case.ticketed:
            case.ticketed = True
            self.tickets += 1
            if self.audit is not None:
                self.audit.append("ticket", now, {"incident": case.incident.id, "reason": reason})
        return True

    def _page(self, case: Case, now: float, reason: str, paged_at: float | None = None) -> None:
        """Hand the incident to the engineer (once): ack, diagnose, fix, retry."""
        if case.human_engaged:
            return
        if paged_at is None and self._ticket(case, now, reason):
            return
        case.human_engaged = True
        case.state = "human"
        view = case.view or self._basic_view(case, now)
        ack = paged_at if paged_at is not None else self.human.page(view, now)
        if paged_at is None:
            self._count_page(case, now)
        if self.audit is not None:
            self.audit.append(
                "page", now, {"incident": case.incident.id, "reason": reason, "ack_at": ack}
            )

        def diagnose() -> None:
            fresh = case.view or self._basic_view(case, ack)
            case.diagnosis = self.human.diagnose(fresh, self.truth, max(ack, now))
            self._at(case, case.diagnosis.finished_at, lambda: self._human_fix(case))

        self._at(case, max(ack, now), diagnose)

    def _count_page(self, case: Case, now: float) -> None:
        """A page, unless it joins the page already sent for the same demand surge."""
        joined = self.surge_pages.joins(case.incident.id, now) if self.mode == "ai" else None
        if joined is None:
            self.pages += 1
        elif self.audit is not None:
            self.audit.append("page_joined", now, {"incident": case.incident.id, "joins": joined})

    def _human_fix(self, case: Case) -> None:
        now = self.view.now
        diag = case.diagnosis
        case.human_attempts += 1
        self.identifications.append(
            {"time": now, "incident": case.incident.id, "service": diag.service, "by": "human"}
        )
        action = self.human.remedy(
            diag,
            self.view.replica_map(),
            callers=self.callers,
            entries=self.entries,
            view=case.view or self._basic_view(case, now),
        )
        before = self.view.health()
        if action.kind in ("noop", "escalate") or self._act(action, "human", case, now) is None:
            self._human_retry(case, now)
            return
        wait = action.profile(self.sim).delay_s + self.config.settle_s
        self._at(case, now + wait, lambda: self._judge_human(case, before))

    def _judge_human(self, case: Case, before: float) -> None:
        now = self.view.now
        if self._worked(case, before, self.view.health(), now):
            case.state = "resolved"
            return
        self._human_retry(case, now)

    def _human_retry(self, case: Case, now: float) -> None:
        if case.human_attempts >= self.config.max_human_attempts:
            return
        view = case.view or self._basic_view(case, now)
        case.diagnosis = self.human.rediagnose(case.diagnosis, view, self.truth, now)
        self._at(case, case.diagnosis.finished_at, lambda: self._human_fix(case))

    # ------------------------------------------------------------------------ shared
    def _worked(self, case: Case, before: float, after: float, now: float) -> bool:
        """Restored (or clearly better) and the incident quiet for `quiet_s`."""
        quiet = now - case.incident.updated >= self.config.quiet_s or not case.incident.is_open
        cfg = self.config
        better = after >= cfg.success_health or (
            before < cfg.success_health and after - before >= 0.5 * (1.0 - before)
        )
        return quiet and better

    def _act(self, action: Action, by: str, case: Case, now: float) -> float | None:
        try:
            at = self.sim.act(action)
        except ActionError as exc:
            self.actions.append(
                {
                    "time": now,
                    "by": by,
                    "incident": case.incident.id,
                    "action": action.to_dict(),
                    "error": str(exc),
                }
            )
            return None
        self.actions.append(
            {"time": at, "by": by, "incident": case.incident.id, "action": action.to_dict()}
        )
        if by != "revert" and self.leftovers.taken(case, action, at):
            if action.kind in ("shed_load", "force_breaker"):
                ttl = self.config.mitigation_ttl_s
                self._at(case, at + ttl, lambda: self.leftovers.expire(case, self.view.now))
        return at
