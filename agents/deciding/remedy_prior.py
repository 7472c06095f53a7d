"""The remedy that worked before, as a prior for the next decision.

Incident memory is only useful to the deciding layer if a past incident is signed the way a
new one is at decision time: `confirm_s` after it opened, from the operator's own telemetry
window, knowing nothing of the labels. The library's `sig-1` (detectors.memory.signature)
uses a 3-minute incident window the operator does not hold yet, so this module has its own
decision-time signature, `dsig-1`, computed from what `decide` has in hand:

- the RCA's top cause's shifts (incident window [opened, now] against the normal window
  [opened - 600 s, opened - 60 s]) for the six RCAEval metrics (cpu, mem, workload,
  latency-50, latency-90, error), as robust z-scores compressed by sign·log1p(|z|);
- the largest such shift per metric over every service (the system-wide picture);
- whether the top cause, or any service of the incident, was rolled out lately (the
  cluster's change events, which the operator reads);
- the cause's kind (service, node, zone) and the alerts' symptom families (IncidentView).

No feature names a service, so incidents compare across systems. `RemedyMemory` plugs into
the operator: it signs each case at its first decision, records what the operator's own
judge (post-check: restored and quiet) said of every automated action, and, when it holds
a `RemedyPrior`, moves the remedy that worked for the nearest past incidents (within a
distance threshold chosen on training incidents) to the front of the runbook's candidates.
The candidate still comes from the runbook, its level from the automation policy and its
execution passes the guardrails: the prior only reorders what the runbook allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agents.contracts import SYMPTOMS, Candidate, Decision, IncidentView
from twin.errors import FirebreakError
from twin.telemetry.spans import EPOCH_UNIX_S
from twin.telemetry.widecsv import RCAEVAL_METRICS, rcaeval_service_name

DSIG_VERSION = "dsig-1"
NORMAL_S = 600.0  # the normal window ends this long before the incident opened …
GAP_S = 60.0  # … less this gap (a fault starts before its first alert)
DEPLOY_LOOKBACK_S = 600.0  # a rollout this recent may be the cause
CAUSE_KINDS = ("service", "node", "zone")
Z_CLIP = 50.0
FEATURES: tuple[str, ...] = (
    *(f"cause_{m}" for m in RCAEVAL_METRICS),
    *(f"max_{m}" for m in RCAEVAL_METRICS),
    "cause_deployed",
    "incident_deployed",
    *(f"kind_{k}" for k in CAUSE_KINDS),
    *(f"symptom_{s}" for s in SYMPTOMS),
)
# the share of training incidents whose nearest neighbour (within the threshold) must name
# a remedy that worked for them too; fixed before any measurement
TARGET_PRECISION = 0.8
MIN_SUPPORT = 3  # the threshold must keep at least this many training incidents


class PriorError(FirebreakError):
    """Bad remedy-prior settings or records; names the field and value."""


def _shift(normal: np.ndarray, incident: np.ndarray) -> float:
    """sign·log1p(|z|) of the incident mean against the normal window's median and MAD."""
    normal = normal[np.isfinite(normal)]
    incident = incident[np.isfinite(incident)]
    if normal.size < 3 or incident.size == 0:
        return 0.0
    med = float(np.median(normal))
    mad = 1.4826 * float(np.median(np.abs(normal - med)))
    z = (float(np.mean(incident)) - med) / (mad + 0.05 * abs(med) + 1e-6)
    z = float(np.clip(z, -Z_CLIP, Z_CLIP))
    return float(np.sign(z) * np.log1p(abs(z)))


def _shifts(table: pd.DataFrame, column: str, opened: float) -> np.ndarray:
    """The six RCAEval metrics' shifts of one service block of a wide table."""
    t = table["time"].to_numpy(float)
    normal = (t >= opened - NORMAL_S) & (t < opened - GAP_S)
    incident = t >= opened
    out = np.zeros(len(RCAEVAL_METRICS))
    for k, m in enumerate(RCAEVAL_METRICS):
        col = f"{column}_{m}"
        if col in table:
            x = table[col].to_numpy(float)
            out[k] = _shift(x[normal], x[incident])
    return out


def decision_signature(
    view: IncidentView,
    table: pd.DataFrame,
    services: Sequence[str],
    deploys: Mapping[str, float],
) -> np.ndarray:
    """dsig-1 of an incident at decision time (`view.now`), from the operator's window.

    `table` is the operator's RCAEval wide table (TelemetryView.table) covering at least
    [opened - 600 s, now]; its "time" column is in the same seconds as `view.opened`.
    """
    if "time" not in table:
        raise PriorError("decision_signature: the telemetry table has no 'time' column")
    n = len(RCAEVAL_METRICS)
    per = {s: _shifts(table, rcaeval_service_name(s), view.opened) for s in services}
    cause = per.get(view.top_cause) if view.top_cause else None
    cause_part = cause if cause is not None else np.zeros(n)
    stacked = np.stack(list(per.values())) if per else np.zeros((1, n))
    widest = stacked[np.argmax(np.abs(stacked), axis=0), np.arange(n)]
    since = view.opened - DEPLOY_LOOKBACK_S

    def deployed(names: Sequence[str]) -> float:
        return float(any(since <= deploys.get(s, -np.inf) <= view.now for s in names))

    fams = set(view.signature.split("+"))
    return np.concatenate(
        [
            cause_part,
            widest,
            [deployed([view.top_cause] if view.top_cause else [])],
            [deployed(view.services)],
            [float(view.cause_kind == k) for k in CAUSE_KINDS],
            [float(s in fams) for s in SYMPTOMS],
        ]
    )


@dataclass(frozen=True)
class PastCase:
    """A past incident as the prior reads it: its dsig-1 and each action's verdict."""

    name: str
    features: tuple[float, ...]
    actions: tuple[tuple[str, bool], ...]

    def worked(self) -> set[str]:
        return {k for k, ok in self.actions if ok}


def check_case(case: PastCase, where: str = "record") -> PastCase:
    """A case whose signature has dsig-1's length and finite values, or PriorError."""
    x = np.asarray(case.features, dtype=float)
    if x.shape != (len(FEATURES),) or not np.all(np.isfinite(x)):
        raise PriorError(
            f"{where}: {case.name!r} features must be {len(FEATURES)} finite numbers "
            f"({DSIG_VERSION}), got {len(case.features)}"
        )
    return case


def votes(neighbours: Sequence[tuple[PastCase, float]]) -> dict[str, float]:
    """Per action kind, Σ ±1/(1+d) over the neighbours' actions: + worked, − did not."""
    out: dict[str, float] = {}
    for case, d in neighbours:
        w = 1.0 / (1.0 + d)
        for kind, ok in case.actions:
            out[kind] = out.get(kind, 0.0) + (w if ok else -w)
    return out


class RemedyPrior:
    """The nearest past incidents (within `threshold`, at most `k`) vote for a remedy."""

    def __init__(self, cases: Sequence[PastCase], threshold: float, k: int = 3) -> None:
        if not (isinstance(threshold, int | float) and np.isfinite(threshold) and threshold >= 0):
            raise PriorError(f"threshold: must be a finite number ≥ 0, got {threshold!r}")
        if not (isinstance(k, int) and k >= 1):
            raise PriorError(f"k: must be an integer ≥ 1, got {k!r}")
        self.cases = [check_case(c) for c in cases if c.actions]
        self.threshold = float(threshold)
        self.k = k
        self._x = (
            np.array([c.features for c in self.cases], dtype=float)
            if self.cases
            else np.zeros((0, len(FEATURES)))
        )

    def neighbours(self, x: np.ndarray, exclude: int | None = None) -> list[tuple[PastCase, float]]:
        """The `k` nearest cases within the threshold, nearest first (ties: stored order)."""
        if not len(self._x):
            return []
        d = np.sqrt(((self._x - np.asarray(x, float)) ** 2).sum(axis=1))
        order = np.lexsort((np.arange(len(d)), d))
        out = [(self.cases[i], float(d[i])) for i in order if i != exclude]
        return [(c, dist) for c, dist in out[: self.k] if dist <= self.threshold]

    def suggest(self, x: np.ndarray, allowed: Sequence[str]) -> tuple[str, str] | None:
        """(kind, why) of the allowed action kind with the largest positive vote, or None."""
        near = self.neighbours(x)
        tally = votes(near)
        ranked = sorted(
            ((v, kind) for kind, v in tally.items() if kind in allowed and v > 0),
            key=lambda t: (-t[0], t[1]),
        )
        if not ranked:
            return None
        kind = ranked[0][1]
        names = ", ".join(f"{c.name} ({d:.2f})" for c, d in near if kind in c.worked())
        return kind, f"prior: {kind} worked for the nearest past incidents {names}"


def choose_threshold(
    cases: Sequence[PastCase],
    precision: float = TARGET_PRECISION,
    min_support: int = MIN_SUPPORT,
) -> float:
    """The largest distance at which leave-one-out suggestions on training cases are right
    (the suggested kind worked for the held-out case) at least `precision` of the time,
    over at least `min_support` suggestions; 0.0 (the prior stays silent) if none is."""
    probe = RemedyPrior(cases, threshold=float(np.finfo(float).max), k=1)
    trials = []
    for i, case in enumerate(probe.cases):
        if not case.worked():
            continue
        near = probe.neighbours(np.array(case.features), exclude=i)
        tally = votes(near)
        best = sorted(((v, k) for k, v in tally.items() if v > 0), key=lambda t: (-t[0], t[1]))
        if near and best:
            trials.append((near[0][1], best[0][1] in case.worked()))
    trials.sort()
    chosen, hits = 0.0, 0
    for n, (d, ok) in enumerate(trials, start=1):
        hits += ok
        if n >= min_support and hits / n >= precision:
            chosen = d
    return float(chosen)


@dataclass
class RemedyMemory:
    """The operator's incident memory: signs cases, records verdicts, applies the prior."""

    prior: RemedyPrior | None = None
    signatures: dict[str, np.ndarray] = field(default_factory=dict)
    verdicts: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    used: dict[str, str] = field(default_factory=dict)  # case -> the kind the prior chose

    def sign(self, case_id: str, view: IncidentView, telemetry: Any) -> np.ndarray:
        """dsig-1 of a case at its first decision (kept: later decisions reuse it)."""
        if case_id not in self.signatures:
            table = telemetry.table(since=view.opened - NORMAL_S)
            table["time"] = table["time"].to_numpy(float) - EPOCH_UNIX_S  # to simulated s
            self.signatures[case_id] = decision_signature(
                view, table, telemetry.services(), telemetry.deploys
            )
        return self.signatures[case_id]

    def judged(self, case_id: str, kind: str, success: bool) -> None:
        """What the operator's judge said of an automated action on the case."""
        if case_id in self.signatures:
            self.verdicts.setdefault(case_id, []).append((kind, bool(success)))

    def prefer(self, case_id: str, decision: Decision, view: IncidentView, assess: Any) -> Decision:
        """The decision with the prior's remedy first, re-assessed by `assess(view, cand)`
        (the automation policy, under the rule's ceiling); unchanged without a suggestion."""
        if self.prior is None or case_id not in self.signatures or not decision.candidates:
            return decision
        kinds = [c.action.kind for c in decision.candidates if c.action.kind != "escalate"]
        hint = self.prior.suggest(self.signatures[case_id], kinds)
        if hint is None:
            return decision
        kind, why = hint
        first: Candidate = next(c for c in decision.candidates if c.action.kind == kind)
        rest = tuple(c for c in decision.candidates if c is not first)
        if first is decision.chosen:
            return Decision(
                decision.incident_id,
                decision.time,
                decision.level,
                first,
                (first, *rest),
                f"{decision.reason} ({why}; the runbook's first choice too)",
            )
        self.used[case_id] = kind
        level, reason = assess(view, first)
        return Decision(
            decision.incident_id,
            decision.time,
            level,
            first,
            (first, *rest),
            f"{level}: {reason}. {why}, ahead of the runbook's ranking",
        )

    def records(self) -> list[dict[str, Any]]:
        """Every signed case with its verdicts (in signing order), for the library."""
        return [
            {
                "case": cid,
                "signature_version": DSIG_VERSION,
                "features": [round(float(v), 6) for v in x],
                "actions": [[k, ok] for k, ok in self.verdicts.get(cid, [])],
                "prior": self.used.get(cid),
            }
            for cid, x in self.signatures.items()
        ]
