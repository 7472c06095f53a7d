"""Automation levels: act automatically, ask for approval, or escalate to a human.

The policy answers "how far may we trust this action for this incident?" from three things:

1. *Do we know this incident?* An incident no runbook rule matches (or whose signature is
   not made of known symptoms) escalates: nobody has written down what to do.
2. *Do we know where the trouble is?* RCA confidence below `escalate_below` escalates (acting
   on a guessed cause can hurt a healthy service); between `escalate_below` and
   `approval_below` the action may at most be proposed for approval; above, trust decides.
3. *Has this action earned it?* The trust boundary grows with evidence: an action kind starts
   at "approval" for each signature and graduates to "auto" once it has succeeded
   `graduate_after` times in a row (since its last failure) *and* the posterior mean of its
   success is at least `graduate_mean`. One failure demotes it back to "approval" and resets
   the run; it must earn `graduate_after` fresh successes (and keep the mean up) to return.

A rule's `max_level` and the policy's `never_auto` kinds cap the result; an `escalate`
action is always "escalate". The trust state is plain data (JSON), carried across runs.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.contracts import LEVELS, Candidate, IncidentView, Level
from agents.deciding.runbook import canonical_signature, is_known_signature
from agents.deciding.selection import OutcomeModel
from agents.deciding.state_io import read_state, write_state
from twin.errors import FirebreakError

_STRICTNESS = {level: i for i, level in enumerate(LEVELS)}  # auto < approval < escalate


class AutomationError(FirebreakError):
    """Bad policy settings, or a trust file that cannot be read."""


def stricter(*levels: Level) -> Level:
    """The most restrictive of some levels (escalate over approval over auto)."""
    return max(levels, key=_STRICTNESS.__getitem__)


@dataclass
class Trust:
    """What one action kind has shown on one signature (streak: successes since a failure)."""

    successes: int = 0
    failures: int = 0
    streak: int = 0
    demotions: int = 0


class AutomationPolicy:
    """Maps (incident, chosen candidate, outcome statistics) to an automation level."""

    def __init__(
        self,
        escalate_below: float = 0.3,
        approval_below: float = 0.6,
        graduate_after: int = 3,
        graduate_mean: float = 0.75,
        never_auto: Collection[str] = (),
        trust: Mapping[tuple[str, str], Trust] | None = None,
        trusted_kinds: Collection[str] = (),
    ) -> None:
        if not 0.0 <= escalate_below <= approval_below <= 1.0:
            raise AutomationError(
                "need 0 <= escalate_below <= approval_below <= 1, got "
                f"{escalate_below!r} and {approval_below!r}"
            )
        if isinstance(graduate_after, bool) or not isinstance(graduate_after, int):
            raise AutomationError(f"graduate_after must be an integer, got {graduate_after!r}")
        if graduate_after < 1:
            raise AutomationError(f"graduate_after must be >= 1, got {graduate_after}")
        if not (math.isfinite(graduate_mean) and 0.0 <= graduate_mean <= 1.0):
            raise AutomationError(f"graduate_mean must be in [0, 1], got {graduate_mean!r}")
        self.escalate_below = escalate_below
        self.approval_below = approval_below
        self.graduate_after = graduate_after
        self.graduate_mean = graduate_mean
        self.never_auto = frozenset(never_auto)
        # kinds the team trusts from day one (reversible, bounded by the guardrails): they
        # start at auto, and like any other kind lose it at their first failure
        self.trusted_kinds = frozenset(trusted_kinds)
        self.trust: dict[tuple[str, str], Trust] = {
            (canonical_signature(sig), kind): Trust(**asdict(t))
            for (sig, kind), t in (trust or {}).items()
        }

    # --- trust -----------------------------------------------------------------------------

    def trust_of(self, signature: str, kind: str) -> Trust:
        return self.trust.get((canonical_signature(signature), kind), Trust())

    def _mean(self, signature: str, kind: str, outcomes: OutcomeModel | None) -> float:
        if outcomes is not None:
            return outcomes.mean(signature, kind)
        t = self.trust_of(signature, kind)
        return (1 + t.successes) / (2 + t.successes + t.failures)

    def trust_level(
        self, signature: str, kind: str, outcomes: OutcomeModel | None = None
    ) -> tuple[Level, str]:
        """ "auto" once graduated, else "approval"; with the evidence for it, in words."""
        t = self.trust_of(signature, kind)
        mean = self._mean(signature, kind, outcomes)
        record = (
            f"{kind} on {canonical_signature(signature)!r}: {t.streak} success(es) in a row "
            f"(need {self.graduate_after}), posterior mean {mean:.2f} "
            f"(need {self.graduate_mean:.2f})"
        )
        if t.streak >= self.graduate_after and mean >= self.graduate_mean - 1e-12:
            return "auto", f"graduated: {record}"
        if kind in self.trusted_kinds and t.failures == 0:
            return "auto", f"trusted by policy until it fails: {record}"
        return "approval", f"not yet trusted: {record}"

    def record(
        self, signature: str, kind: str, success: bool, outcomes: OutcomeModel | None = None
    ) -> Level:
        """Count an executed action's outcome; a failure demotes. Returns the new trust level.

        Pass the same OutcomeModel as to `assess` (after updating it) for the returned level
        to agree with the next decision.
        """
        key = (canonical_signature(signature), kind)
        t = self.trust.setdefault(key, Trust())
        if success:
            t.successes += 1
            t.streak += 1
        else:
            t.failures += 1
            if t.streak >= self.graduate_after:  # it had earned its run: count the demotion
                t.demotions += 1
            t.streak = 0
        return self.trust_level(signature, kind, outcomes)[0]

    # --- levels ----------------------------------------------------------------------------

    def assess(
        self,
        view: IncidentView,
        candidate: Candidate | None,
        outcomes: OutcomeModel | None = None,
        ceiling: Level = "auto",
    ) -> tuple[Level, str]:
        """The level for acting on `candidate` in this incident, and why (in words)."""
        if candidate is None or not is_known_signature(view.signature):
            return "escalate", f"no runbook rule knows signature {view.signature!r}"
        kind = candidate.action.kind
        if kind == "escalate":
            return "escalate", f"rule {candidate.rule!r} hands the incident to a human"
        conf = view.cause_confidence
        if conf < self.escalate_below:
            return "escalate", (
                f"RCA confidence {conf:.2f} is below {self.escalate_below:.2f}: "
                "the cause is a guess"
            )
        level, why = self.trust_level(view.signature, kind, outcomes)
        reasons = [why]
        if conf < self.approval_below:
            level = stricter(level, "approval")
            reasons.append(
                f"RCA confidence {conf:.2f} is below {self.approval_below:.2f}: at most approval"
            )
        if _STRICTNESS[ceiling] > _STRICTNESS["auto"]:
            level = stricter(level, ceiling)
            reasons.append(f"rule {candidate.rule!r} caps automation at {ceiling}")
        if kind in self.never_auto:
            level = stricter(level, "approval")
            reasons.append(f"{kind} is never automatic by policy")
        return level, "; ".join(reasons)

    def level(
        self,
        view: IncidentView,
        candidate: Candidate | None,
        outcomes: OutcomeModel | None = None,
        ceiling: Level = "auto",
    ) -> Level:
        return self.assess(view, candidate, outcomes, ceiling)[0]

    # --- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "settings": {
                "escalate_below": self.escalate_below,
                "approval_below": self.approval_below,
                "graduate_after": self.graduate_after,
                "graduate_mean": self.graduate_mean,
                "never_auto": sorted(self.never_auto),
                "trusted_kinds": sorted(self.trusted_kinds),
            },
            "trust": [
                {"signature": sig, "kind": kind, **asdict(t)}
                for (sig, kind), t in sorted(self.trust.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<trust>") -> AutomationPolicy:
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise AutomationError(f"{source}: not an automation policy (expected version 1)")
        try:
            trust = {}
            for row in data.get("trust") or ():
                row = dict(row)
                key = (str(row.pop("signature")), str(row.pop("kind")))
                counts = {k: int(row.pop(k)) for k in ("successes", "failures", "streak")}
                trust[key] = Trust(**counts, demotions=int(row.pop("demotions", 0)))
                if row:
                    raise AutomationError(f"trust: unknown field {sorted(row)[0]!r}")
            return cls(**dict(data.get("settings") or {}), trust=trust)
        except AutomationError as exc:
            raise AutomationError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise AutomationError(f"{source}: malformed trust state ({exc!r})") from None

    def save(self, path: str | Path) -> None:
        write_state(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> AutomationPolicy:
        return cls.from_dict(read_state(path, AutomationError), str(path))
