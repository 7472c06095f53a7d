"""Risk-aware selection: which of a runbook's candidates to take, and a reason a human can read.

Each candidate is scored as

    score = benefit − risk_weight · risk − cost_weight · cost + dry_run_weight · improvement

- *benefit* is the predicted chance the action resolves this kind of incident: the posterior
  mean (or a lower quantile, to prefer what is proven) of a Beta posterior per (signature,
  action kind), learned from outcomes across runs (`OutcomeModel`);
- *risk* and *cost* come from a small table per action kind (`RISK_TABLE`), scaled by how
  much of the service or traffic the action touches;
- *improvement* is what a dry run in a what-if fork of the twin measured (health after the
  action minus health without it), for candidates whose rule allows a dry run.

Everything is deterministic: ties break on a stable key (kind, parameters, rule).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from scipy.stats import beta as beta_dist

from agents.contracts import Candidate
from agents.deciding.runbook import canonical_signature
from agents.deciding.state_io import read_state, write_state
from twin.control.actions import Action
from twin.errors import FirebreakError

DryRun = Callable[[Action], Mapping[str, Any]]


class SelectionError(FirebreakError):
    """Bad selection settings, or an outcome file that cannot be read."""


# --- outcomes -----------------------------------------------------------------------------

# A mildly informative prior (about two pseudo-outcomes each), for callers who want one:
# targeted fixes usually work, blunt ones less so, doing nothing rarely resolves anything.
INFORMATIVE_PRIORS: dict[str, tuple[float, float]] = {
    "restart_pods": (2.0, 1.0),
    "rollback": (2.0, 1.0),
    "scale_to": (2.0, 1.0),
    "failover": (2.0, 1.0),
    "shed_load": (1.5, 1.0),
    "force_breaker": (1.5, 1.5),
    "escalate": (2.0, 1.0),
    "noop": (1.0, 2.0),
}


def _check_prior(prior: Sequence[float], what: str) -> tuple[float, float]:
    if len(prior) != 2 or not all(
        isinstance(x, int | float) and math.isfinite(x) and x > 0 for x in prior
    ):
        raise SelectionError(f"{what}: a Beta prior is two positive numbers (a, b), got {prior!r}")
    return float(prior[0]), float(prior[1])


class OutcomeModel:
    """Beta(a, b) posterior of success per (signature, action kind), from recorded outcomes.

    Signatures are compared as symptom sets ("errors+latency" and "latency+errors" pool).
    The posterior is the prior plus the counts: Beta(a0 + successes, b0 + failures).
    """

    def __init__(
        self,
        prior: Sequence[float] = (1.0, 1.0),
        kind_priors: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.prior = _check_prior(prior, "prior")
        self.kind_priors = {
            k: _check_prior(v, f"kind_priors.{k}") for k, v in (kind_priors or {}).items()
        }
        self._counts: dict[tuple[str, str], tuple[float, float]] = {}

    def prior_for(self, kind: str) -> tuple[float, float]:
        return self.kind_priors.get(kind, self.prior)

    def update(self, signature: str, kind: str, success: bool, weight: float = 1.0) -> None:
        """Record one outcome (weight < 1 for a partial or uncertain one)."""
        if not (math.isfinite(weight) and weight >= 0):
            raise SelectionError(f"update: weight must be finite and >= 0, got {weight!r}")
        key = (canonical_signature(signature), kind)
        s, f = self._counts.get(key, (0.0, 0.0))
        self._counts[key] = (s + weight, f) if success else (s, f + weight)

    def counts(self, signature: str, kind: str) -> tuple[float, float]:
        """(successes, failures) recorded for this signature and kind."""
        return self._counts.get((canonical_signature(signature), kind), (0.0, 0.0))

    def posterior(
        self, signature: str, kind: str, prior_mean: float | None = None
    ) -> tuple[float, float]:
        """Beta(a, b) after the recorded outcomes; `prior_mean` (a runbook's belief) replaces
        the kind's prior by one worth two pseudo-outcomes with that mean."""
        if prior_mean is None:
            a0, b0 = self.prior_for(kind)
        else:
            a0, b0 = 2.0 * prior_mean, 2.0 * (1.0 - prior_mean)
        s, f = self.counts(signature, kind)
        return a0 + s, b0 + f

    def mean(self, signature: str, kind: str, prior_mean: float | None = None) -> float:
        a, b = self.posterior(signature, kind, prior_mean)
        return a / (a + b)

    p_success = mean

    def lower(
        self, signature: str, kind: str, q: float = 0.1, prior_mean: float | None = None
    ) -> float:
        """The posterior's q-quantile: a success rate we are (1 − q) sure is exceeded."""
        if not 0.0 < q < 1.0:
            raise SelectionError(f"lower: quantile must be in (0, 1), got {q!r}")
        a, b = self.posterior(signature, kind, prior_mean)
        return float(beta_dist.ppf(q, a, b))

    def keys(self) -> list[tuple[str, str]]:
        return sorted(self._counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "prior": list(self.prior),
            "kind_priors": {k: list(v) for k, v in sorted(self.kind_priors.items())},
            "outcomes": [
                {"signature": sig, "kind": kind, "successes": s, "failures": f}
                for (sig, kind), (s, f) in sorted(self._counts.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<outcomes>") -> OutcomeModel:
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise SelectionError(f"{source}: not an outcome model (expected version 1)")
        try:
            model = cls(data.get("prior", (1.0, 1.0)), data.get("kind_priors") or {})
            for i, row in enumerate(data.get("outcomes") or ()):
                s, f = float(row["successes"]), float(row["failures"])
                if not (s >= 0 and f >= 0 and math.isfinite(s + f)):
                    raise SelectionError(f"outcomes[{i}]: counts must be finite and >= 0")
                model._counts[(canonical_signature(str(row["signature"])), str(row["kind"]))] = (
                    s,
                    f,
                )
        except SelectionError as exc:
            raise SelectionError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise SelectionError(f"{source}: malformed outcome row ({exc!r})") from None
        return model

    def save(self, path: str | Path) -> None:
        write_state(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> OutcomeModel:
        return cls.from_dict(read_state(path, SelectionError), str(path))


# --- risk and cost ------------------------------------------------------------------------


@dataclass(frozen=True)
class KindRisk:
    """What an action kind risks and costs, in the score's units (a share of one success).

    risk = base + per_share · (share of the service's pods or traffic the action touches);
    cost = fixed + per_replica · (replicas added: replica-hours over the next hour).
    """

    base: float
    per_share: float = 0.0
    fixed: float = 0.0
    per_replica: float = 0.0
    why: str = ""


RISK_TABLE: dict[str, KindRisk] = {
    "noop": KindRisk(0.0, why="changes nothing; the incident runs on"),
    "restart_pods": KindRisk(
        0.05, 0.25, why="drops in-flight work; capacity lost until the start-up delay passes"
    ),
    "rollback": KindRisk(0.15, why="may take a feature away; needless if nothing was deployed"),
    "scale_to": KindRisk(
        0.02,
        0.40,
        per_replica=0.02,
        why="scale-out costs replica-hours; scale-in (the touched share) risks capacity",
    ),
    "failover": KindRisk(
        0.10, 0.20, why="users see a colder standby: latency, lost sessions, for the share moved"
    ),
    "shed_load": KindRisk(0.05, 0.60, why="refuses the shed share of users outright"),
    "force_breaker": KindRisk(
        0.25, why="an open breaker fails every call on the edge: a feature goes dark"
    ),
    "stop_fault": KindRisk(0.0, why="a rehearsal-only action; nothing real is touched"),
    "escalate": KindRisk(
        0.0, fixed=0.30, why="pages a human: their time, and a slower recovery meanwhile"
    ),
    "rollout_restart": KindRisk(
        0.05, why="surge pods need room; slow (a start-up per batch); drops nothing"
    ),
    "drain": KindRisk(
        0.15, why="a node's capacity is gone until it is repaired; evicted pods restart"
    ),
    "set_retries": KindRisk(
        0.05, why="calls a retry would have saved now fail on their first attempt"
    ),
}
UNKNOWN_KIND = KindRisk(0.30, why="an action kind without a risk entry is assumed risky")


def touched_share(action: Action, replicas: Mapping[str, int]) -> float:
    """How much of a service (pods) or of its traffic an action disturbs, in [0, 1]."""
    params = action.params()
    service = params.get("service")
    current = replicas.get(service) if isinstance(service, str) else None
    if action.kind == "restart_pods":
        if params.get("count") is not None:
            return 1.0 if not current else min(1.0, params["count"] / current)
        share = params.get("share")
        return 1.0 if share is None else float(share)
    if action.kind == "scale_to":
        if not current:
            return 0.0
        return max(0.0, (current - params["replicas"]) / current)
    share = params.get("share")
    return float(share) if isinstance(share, int | float) and not isinstance(share, bool) else 0.0


def added_replicas(action: Action, replicas: Mapping[str, int]) -> int:
    """Replicas an action adds (the whole target when the current count is unknown)."""
    if action.kind != "scale_to":
        return 0
    params = action.params()
    return max(0, params["replicas"] - replicas.get(params["service"], 0))


# --- ranking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreParts:
    """A candidate's score, term by term (weighted), so the reason can say what decided."""

    benefit: float
    risk: float
    cost: float
    dry_run: float

    @property
    def score(self) -> float:
        return self.benefit - self.risk - self.cost + self.dry_run


@dataclass(frozen=True)
class Ranking:
    """Candidates best first (scored), their score terms, and why the first one won."""

    candidates: tuple[Candidate, ...]
    parts: tuple[ScoreParts, ...]
    reason: str

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def describe(action: Action) -> str:
    """`restart_pods(service='cart', share=0.5)`: the kind and the parameters that are set
    (those left at their default are implied, and would only clutter the reason)."""
    shown = [
        f"{fld.name}={getattr(action, fld.name)!r}"
        for fld in dataclasses.fields(action)
        if getattr(action, fld.name) is not None
        and (fld.default is dataclasses.MISSING or getattr(action, fld.name) != fld.default)
    ]
    return f"{action.kind}({', '.join(shown)})"


def stable_key(candidate: Candidate) -> tuple[str, str, str]:
    """Tie-break order: kind, then parameters, then rule; never dict or memory order."""
    params = json.dumps(candidate.action.params(), sort_keys=True, default=str)
    return candidate.action.kind, params, candidate.rule


class RiskAwareSelector:
    """Scores a runbook's candidates by predicted success against risk and cost.

    `benefit="mean"` uses the posterior mean; `"lower"` its `quantile`, which favours actions
    with a record over untried ones. A `dry_run` callback (the operator's what-if fork)
    returns e.g. {"health_before", "health_after", "slo_violation_s"} and optionally
    "health_noop" (the fork's health without the action, the better baseline); it runs for
    the best `dry_run_top` candidates (by score before dry runs) whose rule allows it.
    """

    def __init__(
        self,
        outcomes: OutcomeModel | None = None,
        risk_weight: float = 1.0,
        cost_weight: float = 1.0,
        dry_run: DryRun | None = None,
        *,
        benefit: Literal["mean", "lower"] = "mean",
        quantile: float = 0.1,
        dry_run_weight: float = 1.0,
        dry_run_top: int | None = 3,
        risk_table: Mapping[str, KindRisk] | None = None,
    ) -> None:
        for name, value in (
            ("risk_weight", risk_weight),
            ("cost_weight", cost_weight),
            ("dry_run_weight", dry_run_weight),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise SelectionError(f"{name} must be finite and >= 0, got {value!r}")
        if benefit not in ("mean", "lower"):
            raise SelectionError(f"benefit must be 'mean' or 'lower', got {benefit!r}")
        if not 0.0 < quantile < 1.0:
            raise SelectionError(f"quantile must be in (0, 1), got {quantile!r}")
        if dry_run_top is not None and dry_run_top < 1:
            raise SelectionError(f"dry_run_top must be >= 1 or None, got {dry_run_top!r}")
        self.outcomes = outcomes if outcomes is not None else OutcomeModel()
        self.risk_weight = risk_weight
        self.cost_weight = cost_weight
        self.dry_run = dry_run
        self.benefit = benefit
        self.quantile = quantile
        self.dry_run_weight = dry_run_weight
        self.dry_run_top = dry_run_top
        self.risk_table = dict(RISK_TABLE if risk_table is None else risk_table)

    def risk_cost(self, action: Action, replicas: Mapping[str, int]) -> tuple[float, float]:
        """Unweighted (risk, cost) of an action from the risk table."""
        entry = self.risk_table.get(action.kind, UNKNOWN_KIND)
        risk = entry.base + entry.per_share * touched_share(action, replicas)
        cost = entry.fixed + entry.per_replica * added_replicas(action, replicas)
        return risk, cost

    def _benefit(self, signature: str, kind: str, prior: float | None = None) -> float:
        if self.benefit == "lower":
            return self.outcomes.lower(signature, kind, self.quantile, prior)
        return self.outcomes.mean(signature, kind, prior)

    def rank(
        self,
        signature: str,
        candidates: Sequence[Candidate],
        replicas: Mapping[str, int] | None = None,
        dry_run_rules: Collection[str] | None = None,
    ) -> Ranking:
        """Score and order the candidates; `dry_run_rules` None lets every rule dry-run."""
        replicas = replicas or {}
        scored: list[tuple[Candidate, ScoreParts]] = []
        for cand in candidates:
            risk, cost = self.risk_cost(cand.action, replicas)
            parts = ScoreParts(
                benefit=self._benefit(signature, cand.action.kind, cand.prior),
                risk=self.risk_weight * risk,
                cost=self.cost_weight * cost,
                dry_run=0.0,
            )
            p = self.outcomes.mean(signature, cand.action.kind, cand.prior)
            cand = replace(cand, p_success=p, risk=risk, cost=cost, score=parts.score)
            scored.append((cand, parts))
        scored.sort(key=_order)
        if self.dry_run is not None:
            scored = self._dry_runs(scored, dry_run_rules)
            scored.sort(key=_order)
        ranked = tuple(c for c, _ in scored)
        parts_ = tuple(p for _, p in scored)
        return Ranking(ranked, parts_, self._reason(signature, scored))

    def _dry_runs(
        self, scored: list[tuple[Candidate, ScoreParts]], allowed: Collection[str] | None
    ) -> list[tuple[Candidate, ScoreParts]]:
        assert self.dry_run is not None
        budget = self.dry_run_top if self.dry_run_top is not None else len(scored)
        out = []
        for cand, parts in scored:
            if budget > 0 and (allowed is None or cand.rule in allowed):
                budget -= 1
                result, improvement = self._try(cand.action)
                parts = replace(parts, dry_run=self.dry_run_weight * improvement)
                cand = replace(cand, dry_run=result, score=parts.score)
            out.append((cand, parts))
        return out

    def _try(self, action: Action) -> tuple[dict[str, Any], float]:
        """Run the dry run; a failed one is recorded and changes nothing."""
        assert self.dry_run is not None
        try:
            result = dict(self.dry_run(action))
        except FirebreakError as exc:
            return {"error": str(exc)}, 0.0
        after = result.get("health_after")
        base = result.get("health_noop", result.get("health_before"))
        if not isinstance(after, int | float) or not isinstance(base, int | float):
            return result, 0.0
        improvement = float(after) - float(base)
        result["improvement"] = improvement
        return result, improvement

    def _reason(self, signature: str, scored: Sequence[tuple[Candidate, ScoreParts]]) -> str:
        if not scored:
            return f"no candidates for signature {signature!r}"
        best, parts = scored[0]
        a, b = self.outcomes.posterior(signature, best.action.kind, best.prior)
        how = "mean" if self.benefit == "mean" else f"{self.quantile:g}-quantile"
        text = (
            f"chose {describe(best.action)} from rule {best.rule!r}: score {parts.score:.3f} = "
            f"benefit {parts.benefit:.3f} (posterior {how}, Beta({a:g}, {b:g})) "
            f"- risk {parts.risk:.3f} - cost {parts.cost:.3f}"
            f" + dry-run {parts.dry_run:+.3f}"
        )
        if best.dry_run is not None:
            text += f" ({_dry_text(best.dry_run)})"
        if len(scored) == 1:
            return text + "; the only candidate"
        second, sparts = scored[1]
        return (
            text
            + f"; runner-up {describe(second.action)} from rule {second.rule!r} "
            + (f"scored {sparts.score:.3f}: {_why_lost(parts, sparts)}")
        )


def _order(item: tuple[Candidate, ScoreParts]) -> tuple[float, tuple[str, str, str]]:
    return -round(item[1].score, 12), stable_key(item[0])


def _dry_text(result: Mapping[str, Any]) -> str:
    if "error" in result:
        return f"dry run failed: {result['error']}"
    if "improvement" in result:
        base = result.get("health_noop", result.get("health_before"))
        return f"health {base:.3f} -> {result['health_after']:.3f} in the fork"
    return "dry run gave no health figures"


def _why_lost(best: ScoreParts, other: ScoreParts) -> str:
    """The terms on which the runner-up fell behind (biggest gap first), and any it led on."""
    if round(best.score, 12) == round(other.score, 12):
        return "tied on score; the stable order (kind, parameters, rule) decided"
    terms = [  # (worse name, better name, gap in the winner's favour, winner's, runner-up's)
        (
            "lower benefit",
            "higher benefit",
            best.benefit - other.benefit,
            best.benefit,
            other.benefit,
        ),
        ("higher risk", "lower risk", other.risk - best.risk, best.risk, other.risk),
        ("higher cost", "lower cost", other.cost - best.cost, best.cost, other.cost),
        (
            "worse dry run",
            "better dry run",
            best.dry_run - other.dry_run,
            best.dry_run,
            other.dry_run,
        ),
    ]
    worse = sorted((t for t in terms if t[2] > 1e-12), key=lambda t: -t[2])
    better = sorted((t for t in terms if t[2] < -1e-12), key=lambda t: t[2])
    text = ", ".join(f"{t[0]} ({t[4]:.3f} vs {t[3]:.3f})" for t in worse)
    if better:
        text += " despite " + ", ".join(f"{t[1]} ({t[4]:.3f} vs {t[3]:.3f})" for t in better)
    return text
