"""Baseline policies with the SB3 `predict` signature, so evaluation treats all alike.

- `RunbookPolicy`: the default runbook (`runbooks/default.yaml`, via `agents.deciding.runbook`)
  applied to what the observation shows: an incident when a service's alert score passes
  the threshold, the RCA's top-ranked service as the cause, the symptom families alerting
  there as the signature, confidence s1 / (s1 + s2) of the two best RCA scores. It takes
  the first runbook candidate the env can express and the mask allows, waits for it to
  take effect (its delay plus `settle_s`, as the operator does), tries the next one if the
  incident goes on, and escalates after `max_attempts` or when no rule applies. When the
  node series show a sick zone or node (badness at least `node_threshold`, `twin.envs.nodes`),
  the cause is that zone or node, as the operator's RCA would rank it, and the runbook's
  drain rules apply.
- `DoNothingPolicy` and `RandomPolicy` (uniform over the allowed actions).

Each keeps per-env state for vectorised use; `episode_start` (as SB3 passes it) resets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.contracts import IncidentView
from agents.deciding.runbook import Runbook, load_runbook
from twin.envs.encoding import ALERT_SLICE, FAMILIES, GF, SF, ObservationLayout
from twin.envs.remediation import GLOBAL_ACTIONS, TARGET_ACTIONS, action_index

ALERT_THRESHOLD = 0.3  # an alert score of 0.3 is a z-score of 3
NODE_THRESHOLD = 0.15  # a node badness of 0.15: 15% of its CPU taken by others, 3% drops, ...
# how long each kind takes to show its effect (declared delays, twin.control.actions)
EFFECT_S = {
    "restart": 10.0,
    "scale_up": 10.0,
    "rollback": 60.0,
    "failover": 30.0,
    "failback": 30.0,
    "shed": 5.0,
    "unshed": 5.0,
    "drain_node": 15.0,
    "drain_zone": 15.0,
}


def _batch(obs: np.ndarray) -> tuple[np.ndarray, bool]:
    obs = np.asarray(obs)
    return (obs[None], True) if obs.ndim == 1 else (obs, False)


def _masks(action_masks: Any, n: int, size: int) -> np.ndarray:
    if action_masks is None:
        return np.ones((n, size), bool)
    return np.asarray(action_masks, bool).reshape(n, size)


class DoNothingPolicy:
    """Always action 0 (noop): what the incident costs if nobody acts."""

    def __init__(self, n_actions: int) -> None:
        self.n_actions = n_actions

    def predict(self, obs, state=None, episode_start=None, deterministic=True, action_masks=None):
        batch, single = _batch(obs)
        actions = np.zeros(len(batch), np.int64)
        return (actions[0] if single else actions), state


class RandomPolicy:
    """Uniform over the actions the mask allows (all, without a mask)."""

    def __init__(self, n_actions: int, seed: int | None = None) -> None:
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)

    def predict(self, obs, state=None, episode_start=None, deterministic=True, action_masks=None):
        batch, single = _batch(obs)
        masks = _masks(action_masks, len(batch), self.n_actions)
        actions = np.array([self.rng.choice(np.flatnonzero(m)) for m in masks], np.int64)
        return (actions[0] if single else actions), state


@dataclass
class _Case:
    step: int = 0
    wait_until: int = 0
    attempts: int = 0
    tried: set[int] = field(default_factory=set)
    escalated: bool = False


class RunbookPolicy:
    """The default runbook as a policy over a remediation env's observation (see module)."""

    def __init__(
        self,
        layout: ObservationLayout,
        decision_s: float,
        runbook: Runbook | None = None,
        settle_s: float = 120.0,
        max_attempts: int = 2,
        threshold: float = ALERT_THRESHOLD,
        node_threshold: float = NODE_THRESHOLD,
    ) -> None:
        self.layout = layout
        self.decision_s = float(decision_s)
        self.runbook = runbook if runbook is not None else load_runbook()
        self.settle_s = settle_s
        self.max_attempts = max_attempts
        self.threshold = threshold
        self.node_threshold = node_threshold
        self.n_targets = layout.top_k if layout.layout == "ranked" else layout.n_services
        self.n_actions = len(GLOBAL_ACTIONS) + len(TARGET_ACTIONS) * self.n_targets
        self._cases: list[_Case] = []

    def reset(self) -> None:
        self._cases = []

    def predict(self, obs, state=None, episode_start=None, deterministic=True, action_masks=None):
        batch, single = _batch(obs)
        n = len(batch)
        masks = _masks(action_masks, n, self.n_actions)
        if len(self._cases) != n:
            self._cases = [_Case() for _ in range(n)]
        starts = np.ones(n, bool) if episode_start is None else np.asarray(episode_start, bool)
        actions = np.zeros(n, np.int64)
        for i in range(n):
            if episode_start is not None and starts.reshape(-1)[i]:
                self._cases[i] = _Case()
            actions[i] = self._decide(self._cases[i], batch[i], masks[i])
        return (actions[0] if single else actions), state

    # -------------------------------------------------------------------------------
    def _infra_view(self, obs: np.ndarray) -> IncidentView | None:
        """A zone or node incident when the node series show one (zone first)."""
        zone, node = float(obs[GF["zone_worst"]]), float(obs[GF["node_worst"]])
        if max(zone, node) < self.node_threshold:
            return None
        kind = "zone" if zone >= self.node_threshold else "node"
        return IncidentView(
            id="rl",
            opened=0.0,
            now=0.0,
            services=(kind,),
            signals=("node",),
            detectors=("node",),
            n_alerts=1,
            top_cause=kind,
            cause_confidence=1.0,
            causes=((kind, max(zone, node)),),
            signature="node",
            evidence={"entries": ["entry"], "callers": {}},
            cause_kind=kind,
        )

    def view(self, obs: np.ndarray) -> IncidentView | None:
        """The incident the observation shows (None when nothing alerts)."""
        infra = self._infra_view(obs)
        if infra is not None:
            return infra
        rows = self.layout.services(obs)
        present = self.layout.present(obs)
        alerts = np.where(present[:, None], rows[:, ALERT_SLICE], 0.0)
        if alerts.max() < self.threshold:
            return None
        rca = np.where(present, rows[:, SF["rca"]], -1.0)
        top = int(np.argmax(rca))
        best = sorted((max(float(r), 0.0) for r in rca), reverse=True)[:2]
        conf = best[0] / (best[0] + best[1]) if best and best[0] > 0 else 0.0
        mine = alerts[top] >= self.threshold
        seen = mine if mine.any() else (alerts >= self.threshold).any(axis=0)
        signature = "+".join(f for f, on in zip(FAMILIES, seen, strict=True) if on) or "unknown"
        alerting = np.flatnonzero((alerts >= self.threshold).any(axis=1))
        names = [f"s{k}" for k in range(len(rows))]
        return IncidentView(
            id="rl",
            opened=0.0,
            now=0.0,
            services=tuple(names[k] for k in alerting),
            signals=tuple(f for f, on in zip(FAMILIES, seen, strict=True) if on),
            detectors=("zscore",),
            n_alerts=int((alerts >= self.threshold).sum()),
            top_cause=names[top],
            cause_confidence=round(conf, 4),
            causes=tuple((names[k], float(rca[k])) for k in np.argsort(-rca)[:5]),
            signature=signature,
            evidence={"entries": ["entry"], "callers": {}},
        )

    def _index(self, candidate_action, top: int) -> tuple[int, str] | None:
        kind = candidate_action.kind
        if kind == "escalate":
            return action_index("escalate", None, self.n_targets), "escalate"
        if kind == "shed_load":
            if candidate_action.share <= 0:
                return None
            return action_index("shed", None, self.n_targets), "shed"
        if kind == "drain":
            mapped = "drain_zone" if candidate_action.node == "zone" else "drain_node"
            return action_index(mapped, None, self.n_targets), mapped
        mapped = {"restart_pods": "restart", "rollback": "rollback"}.get(kind)
        if kind == "scale_to":
            mapped = "scale_up"
        elif kind == "failover":
            mapped = "failover" if candidate_action.share > 0 else "failback"
        if mapped is None:
            return None  # force_breaker on a caller: not in this action space
        return action_index(mapped, top, self.n_targets), mapped

    def _decide(self, case: _Case, obs: np.ndarray, mask: np.ndarray) -> int:
        case.step += 1
        if obs[GF["escalated"]] > 0.5:
            case.escalated = True
        if case.step < case.wait_until or case.escalated:
            return 0
        view = self.view(obs)
        if view is None:
            case.attempts, case.tried = 0, set()
            return 0
        top = int(view.top_cause[1:]) if view.cause_kind == "service" else 0
        escalate = action_index("escalate", None, self.n_targets)
        if case.attempts >= self.max_attempts:
            return self._escalate(case, mask, escalate)
        replicas = {name: 1 for name in (f"s{k}" for k in range(self.n_targets))}
        for candidate in self.runbook.candidates(view, replicas):
            found = self._index(candidate.action, top)
            if found is None:
                continue
            index, kind = found
            if index in case.tried or not mask[index]:
                continue
            if kind == "escalate":
                return self._escalate(case, mask, index)
            case.tried.add(index)
            case.attempts += 1
            wait = EFFECT_S.get(kind, 10.0) + self.settle_s
            case.wait_until = case.step + int(np.ceil(wait / self.decision_s))
            return index
        return self._escalate(case, mask, escalate)

    def _escalate(self, case: _Case, mask: np.ndarray, index: int) -> int:
        if mask[index]:
            case.escalated = True
            return index
        return 0


class TriagePolicy:
    """A telemetry-only triage rule, the simplest policy that acts on the cause's layer.

    When the node series show a sick zone or node (badness at least `node_threshold`), drain
    it; otherwise, when a ranked service alerts, roll back the top-ranked one (a rollback
    replaces every pod, so it ends pod-state faults as well as a bad version); then sit
    out `ceil(settle_s / decision_s)` decisions for the effect before acting again. No
    runbook, no escalation: a strong, transparent baseline for learned policies, and a
    teacher for warm-starting them (`agents.rl.warm_start`).
    """

    def __init__(
        self,
        layout: ObservationLayout,
        decision_s: float,
        settle_s: float = 120.0,
        threshold: float = ALERT_THRESHOLD,
        node_threshold: float = NODE_THRESHOLD,
    ) -> None:
        self.layout = layout
        self.n_targets = layout.top_k if layout.layout == "ranked" else layout.n_services
        self.n_actions = len(GLOBAL_ACTIONS) + len(TARGET_ACTIONS) * self.n_targets
        self.wait = max(int(np.ceil(settle_s / float(decision_s))), 1)
        self.threshold = threshold
        self.node_threshold = node_threshold
        self._waits: list[int] = []

    def predict(self, obs, state=None, episode_start=None, deterministic=True, action_masks=None):
        batch, single = _batch(obs)
        n = len(batch)
        masks = _masks(action_masks, n, self.n_actions)
        if len(self._waits) != n:
            self._waits = [0] * n
        starts = np.zeros(n, bool) if episode_start is None else np.asarray(episode_start, bool)
        actions = np.zeros(n, np.int64)
        for i in range(n):
            if starts.reshape(-1)[i]:
                self._waits[i] = 0
            actions[i] = self._decide(i, batch[i], masks[i])
        return (actions[0] if single else actions), state

    def choice(self, obs: np.ndarray) -> int:
        """The action this rule wants now, ignoring masks and waiting (0: nothing)."""
        if obs[GF["zone_worst"]] >= self.node_threshold:
            return GLOBAL_ACTIONS.index("drain_zone")
        if obs[GF["node_worst"]] >= self.node_threshold:
            return GLOBAL_ACTIONS.index("drain_node")
        rows = self.layout.services(obs)
        present = self.layout.present(obs)
        alerts = np.where(present[:, None], rows[:, ALERT_SLICE], 0.0)
        if alerts.max() < self.threshold:
            return 0
        top = int(np.argmax(np.where(present, rows[:, SF["rca"]], -1.0)))
        return action_index("rollback", top, self.n_targets)

    def _decide(self, i: int, obs: np.ndarray, mask: np.ndarray) -> int:
        if self._waits[i] > 0:
            self._waits[i] -= 1
            return 0
        action = self.choice(obs)
        if action == 0 or not mask[action]:
            return 0
        self._waits[i] = self.wait
        return action
