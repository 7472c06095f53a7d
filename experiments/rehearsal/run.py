"""A rehearsal: one scenario, one operations mode, the closed loop, a scored run directory.

`rehearse(scenario, mode, out)` runs the twin through `twin.run.runner.run_scenario` (so the run
directory is the usual one: metrics, events, logs, traces, labels, summary) with an
`agents.loop.operator.Operator` driving it, then scores the stack against the labels and adds
its block to summary.json under ``stacks[mode]``; the AI mode also writes ``audit.jsonl``.
The same scenario and seed give the same bytes, whichever mode ran first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.deciding.analysis import IncidentAnalyst
from agents.deciding.automation import AutomationPolicy
from agents.deciding.remedy_prior import RemedyMemory, RemedyPrior
from agents.deciding.runbook import load_runbook
from agents.deciding.selection import OutcomeModel, RiskAwareSelector
from agents.loop.observed_feed import ObservedFeed
from agents.loop.operator import MODES, Operator, OperatorConfig
from agents.oncall import FaultTruth, OnCallEngineer, OnCallProfile
from agents.safety.audit import AuditLog
from agents.safety.guardrail_config import GuardrailConfig
from agents.safety.guardrails import Guardrails
from agents.scaling.predictive import PredictiveScaler
from detectors.anomaly.evaluation import parse_labels
from detectors.anomaly.pipeline import TieredPipeline
from detectors.anomaly.static import StaticThresholds
from detectors.correlation import Correlator
from detectors.rca.randomwalk import RandomWalkRca
from experiments.detection.suite import fit_tier2, normal_run
from experiments.observed import TelemetryChoice, check_telemetry, with_telemetry_mode
from experiments.rehearsal.score import score_stack
from twin.errors import FirebreakError
from twin.flow.engine import Simulation
from twin.rng import stream
from twin.run.labels import fault_roots
from twin.run.runner import RunResult, run_scenario
from twin.run.slo import SloTracker
from twin.scenario.schema import Scenario

# what the shipped policy lets run on its own from the start, each bounded by the guardrails:
# scaling (reversible), a rolling restart and a retry cap (they keep capacity, lose no
# feature), a drain of a node the RCA names (managed Kubernetes' node auto-repair drains on
# its own; at most one per 10 minutes); every other kind (a rollback loses a feature when
# it is wrong) earns automation through successes (agents.deciding.automation)
TRUSTED_FROM_START = ("scale_to", "rollout_restart", "set_retries", "drain")


class RehearsalError(FirebreakError):
    """A rehearsal that cannot run as asked (unknown mode, bad runbook or guardrails)."""


@dataclass
class StackSettings:
    """What an operations mode runs with; defaults are the shipped runbook and limits."""

    runbook: str | Path | None = None
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig)
    oncall: OnCallProfile = field(default_factory=OnCallProfile)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    outcomes: OutcomeModel | None = None
    policy: AutomationPolicy | None = None
    tier2: str | None = "pca"
    trust_pickle: bool = False  # let `rl:DIR` load a stable-baselines3 zip (runs its code)
    # what the operator, its detectors and RCA see: "ideal" (the twin's exact ticks) or
    # "production" (the run directory's scraped 15 s steps, agents.loop.observed_feed)
    telemetry: TelemetryChoice = "ideal"
    # incident memory (agents.deciding.remedy_prior): sign the AI's cases and record its
    # verdicts (`remember`), and with a prior, try the remedy that worked for near ones first
    remedy_prior: RemedyPrior | None = None
    remember: bool = False


def loop_scenario(scenario: Scenario, telemetry: str) -> Scenario:
    """The scenario as a rehearsal with this loop telemetry runs it: with "production" the
    run directory records production telemetry (what the operator reads); with "ideal" the
    scenario's own telemetry mode stands (the operator reads the exact ticks either way)."""
    if check_telemetry(telemetry) == "production":
        return with_telemetry_mode(scenario, "production")
    return scenario


def fault_truths(scenario: Scenario) -> tuple[FaultTruth, ...]:
    """The fault schedule as the simulated engineer may consult it (through its accuracy)."""
    out = []
    for f in scenario.faults:
        end = f.start + f.duration if f.duration is not None else scenario.duration
        peer = getattr(f, "peer", None)
        roots, _ = fault_roots(scenario, f)
        out.append(
            FaultTruth(
                kind=f.kind,
                target=f.target,
                start=float(f.start),
                end=float(end),
                peer=peer,
                others=tuple(r for r in roots if r not in (f.target, peer)),
            )
        )
    return tuple(out)


class RehearsalController:
    """Plugs an operator into `run_scenario`: drives the run, then scores the stack."""

    def __init__(self, scenario: Scenario, mode: str, out: Path, settings: StackSettings) -> None:
        kind, _, path = mode.partition(":")
        if kind not in MODES or (kind == "rl") != bool(path):
            raise RehearsalError(f"--ops: expected traditional, ai or rl:POLICY_DIR, got {mode!r}")
        check_telemetry(settings.telemetry)
        if kind == "rl" and settings.telemetry == "production":
            raise RehearsalError(
                "--telemetry: production is for traditional and ai operations; an rl policy "
                "observes the twin's ticks it was trained on (use --telemetry ideal)"
            )
        self.scenario = scenario
        self.mode = kind  # the stack's name in summary.json
        self.rl_policy = None
        if path:  # read the policy now: a bad one fails before the run directory is opened
            from agents.rl.policy_files import load_policy

            self.rl_policy = load_policy(path, trust_pickle=settings.trust_pickle)
        self.runner = None
        self.out = out
        self.settings = settings
        self.operator: Operator | None = None
        self.audit: AuditLog | None = None
        self.scaler: PredictiveScaler | None = None

    def _detector(self, names: tuple[str, ...]) -> Any:
        if self.mode == "traditional":
            return StaticThresholds.for_scenario(self.scenario, names)
        tier2 = None
        if self.settings.tier2:  # fitted on a normal day seen the way the loop sees this one
            tier2 = fit_tier2(
                [normal_run(self.scenario)],
                seed=self.scenario.seed,
                kind=self.settings.tier2,
                telemetry=self.settings.telemetry,
            )
        return TieredPipeline(names, tier2=tier2, detector_name="tiered")

    def drive(self, sim: Simulation) -> None:
        names = sim.topo.names
        graph = self.scenario.topology.graph()
        s = self.settings
        rng = stream(self.scenario.seed, "oncall-engineer")
        human = OnCallEngineer(s.oncall, rng)
        kwargs: dict[str, Any] = {}
        if s.telemetry == "production":
            kwargs["feed"] = ObservedFeed(sim)
        if self.mode == "rl":
            from agents.rl.policy_runner import PolicyRunner

            model, policy_settings = self.rl_policy
            self.runner = PolicyRunner(model, policy_settings, sim, guardrails=s.guardrails)
            kwargs["on_frame"] = self.runner.observe
        if self.mode == "ai":
            # demand forecasting and pre-emptive scaling: it takes over a service's HPA once
            # a day of its history exists (in shorter runs the HPA keeps it throughout)
            self.scaler = PredictiveScaler(sim)
            kwargs["on_frame"] = self.scaler.observe
            self.audit = AuditLog(self.out / "audit.jsonl")
            # a log that outlives one rehearsal (a reused directory) says where each begins
            self.audit.event(
                "run_start",
                0.0,
                scenario=self.scenario.name,
                seed=self.scenario.seed,
                mode=self.mode,
                duration_s=self.scenario.duration,
            )
            entries = sorted({c.entry for c in self.scenario.workload.classes})
            kwargs |= {
                "analyst": IncidentAnalyst(RandomWalkRca(), graph, entries),
                "runbook": load_runbook(s.runbook),
                # one candidate dry-run per decision (plus the no-action fork): every fork
                # replays the run from its start, which is most of a long rehearsal's time
                "selector": RiskAwareSelector(s.outcomes or OutcomeModel(), dry_run_top=1),
                "policy": s.policy or AutomationPolicy(trusted_kinds=TRUSTED_FROM_START),
                "guardrails": Guardrails(s.guardrails),
                "audit": self.audit,
            }
            if s.remember or s.remedy_prior is not None:
                kwargs["memory"] = RemedyMemory(s.remedy_prior)
        self.operator = Operator(
            sim,
            self.mode,
            detector=self._detector(names),
            correlator=Correlator(graph),
            human=human,
            truth=fault_truths(self.scenario),
            config=s.operator,
            **kwargs,
        )
        try:
            self.operator.run()
        finally:
            if self.audit is not None:
                self.audit.close()

    def finish(self, truth: dict, slo: SloTracker, summary: dict) -> dict[str, Any]:
        op = self.operator
        op.correlator.flush()
        if self.runner is not None:  # the policy's actions, automated like the AI's
            for record in self.runner.actions:
                if "action" in record:
                    op.actions.append(
                        {
                            "time": record["time"],
                            "by": "auto",
                            "agent": "rl",
                            "incident": None,
                            "action": record["action"],
                        }
                    )
        faults = parse_labels(truth, "labels.json")
        stack = score_stack(
            alerts=op.alerts,
            incidents=op.correlator.incidents,
            faults=faults,
            slo=slo,
            identifications=op.identifications,
            actions=op.actions,
            decisions=op.decisions,
            pages=op.pages,
            n_services=len(op.sim.topo.names),
            duration_s=summary["sim_seconds"],
            replica_hours=summary["replica_hours"],
            guardrails=self.settings.guardrails,
            oracle=truth.get("faults", ()),
            tickets=op.tickets,
        )
        if self.scaler is not None:
            log = self.scaler.log
            stack["predictive_scale_actions"] = sum(e["what"] == "scale" for e in log)
            stack["predictive_fallbacks"] = sum(e["what"] == "fallback" for e in log)
        (self.out / "operations.json").write_text(
            json.dumps(
                {
                    "mode": self.mode,
                    "incidents": [i.to_dict() for i in op.correlator.incidents],
                    "decisions": op.decisions,
                    "actions": op.actions,
                    "identifications": op.identifications,
                },
                indent=1,
                default=str,
            )
        )
        return stack


def rehearse(
    scenario: Scenario,
    mode: str,
    out: Path,
    *,
    settings: StackSettings | None = None,
    progress=None,
    truth: dict | None = None,
    allow_large: bool = False,
) -> RunResult:
    """Run one operations mode on the scenario; the run directory holds the scored summary.

    `truth`: the scenario's labels from an earlier rehearsal of it (they describe the faults
    alone, so every mode shares them); computed here when not given."""
    out = Path(out)
    settings = settings or StackSettings()
    scenario = loop_scenario(scenario, settings.telemetry)
    out.mkdir(parents=True, exist_ok=True)
    controller = RehearsalController(scenario, mode, out, settings)
    return run_scenario(
        scenario,
        out,
        progress=progress,
        controller=controller,
        truth=truth,
        allow_large=allow_large,
    )
