"""A trained policy driving a live simulation: frames in, actions out through `sim.act`.

The rehearsal streams a run's frames; `PolicyRunner.observe(frame)` averages them over the
policy's decision interval (whatever the run's tick), encodes the interval exactly as the
environment did (same encoder, scorer, action codec and agent memory), asks the policy,
passes the action through the guardrails and applies it. So a policy trained in
`firebreak/Remediation-v0` or `firebreak/Autoscale-v0` acts on a rehearsal as it learned to.

Typical use::

    runner = PolicyRunner.load("runs/rl/remediation", sim)
    for frame in sim.frames():
        runner.observe(frame)
    runner.actions  # what it did, when, and what the guardrails said
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from agents.rl.envs import AUTOSCALE_ID, REMEDIATION_ID
from agents.rl.gate import GuardrailGate, autoscale_guardrails
from agents.rl.policy_files import load_policy
from agents.rl.train import TrainingError
from agents.safety.guardrail_config import GuardrailConfig
from twin.control.actions import Action, ActionError, ScaleTo
from twin.envs.autoscale import CHOICES, SCALE_CAP, SCALE_OUT_BY
from twin.envs.base import GateView
from twin.envs.encoding import AgentMemory, ObservationEncoder, RobustZScorer, ServiceStatics
from twin.envs.nodes import NodeWatch
from twin.envs.remediation import RemediationCodec
from twin.fields import N_SERVICE_METRICS
from twin.flow.engine import Simulation
from twin.telemetry.frame import Frame


class PolicyRunner:
    """Feeds a live simulation's frames to a trained policy and applies what it decides."""

    def __init__(
        self,
        model: Any,
        settings: dict[str, Any],
        sim: Simulation,
        guardrails: GuardrailConfig | None = None,
        deterministic: bool = True,
    ) -> None:
        env = settings.get("env_settings", {})
        self.env_id = settings.get("env_id")
        if self.env_id not in (REMEDIATION_ID, AUTOSCALE_ID):
            raise TrainingError(f"policy settings: unknown env {self.env_id!r}")
        self.model = model
        self.maskable = settings.get("algo") == "maskable-ppo"
        self.sim = sim
        self.deterministic = deterministic
        self.decision_s = float(env.get("decision_s", 10.0))
        if self.decision_s < sim.dt - 1e-9:
            raise TrainingError(
                f"the policy decides every {self.decision_s:g} s, faster than the run's "
                f"{sim.dt:g} s tick"
            )
        self.statics = ServiceStatics.of(sim.scenario)
        layout = env.get("observation", "ranked")
        n = self.statics.n if layout == "services" else None
        self.encoder = ObservationEncoder(layout, int(env.get("top_k", 5)), n)
        expected = getattr(model, "observation_space", None)
        self.encoder.reset(self.statics, RobustZScorer(), max(1, round(60.0 / self.decision_s)))
        self.memory = AgentMemory(self.statics.n)
        self.view = GateView(self.statics.names)
        self.nodes = NodeWatch(sim.scenario.infrastructure, self.encoder.warmup)
        self._node_sum: np.ndarray | None = None
        if guardrails is None and self.env_id == AUTOSCALE_ID:
            guardrails = autoscale_guardrails()
        self.gate = GuardrailGate(guardrails)
        entries = sorted(
            {c.entry for c in sim.scenario.workload.classes},
            key=lambda e: (-sum(c.rate for c in sim.scenario.workload.classes if c.entry == e), e),
        )
        self.codec = RemediationCodec(
            self.statics,
            self.encoder,
            self.memory,
            self.view,
            self.statics.names.index(entries[0]),
            float(env.get("shed_share", 0.3)),
            self.nodes,
        )
        self._sum = np.zeros((self.statics.n, N_SERVICE_METRICS))
        self._count = 0
        self._next = self.decision_s
        self.actions: list[dict[str, Any]] = []
        self.last_obs: np.ndarray | None = None
        if expected is not None and self.env_id == REMEDIATION_ID:
            if tuple(expected.shape) != (self.encoder.size,):
                raise TrainingError(
                    f"the policy expects observations of shape {tuple(expected.shape)}; this "
                    f"topology gives {(self.encoder.size,)} (a 'services' policy only runs on "
                    "the topology it was trained on)"
                )

    @classmethod
    def load(
        cls, path: str | Path, sim: Simulation, *, trust_pickle: bool = False, **kwargs: Any
    ) -> PolicyRunner:
        """A runner for the policy saved at `path` (a `firebreak train` output directory).

        `trust_pickle` lets a stable-baselines3 zip load, running any code it holds."""
        model, settings = load_policy(path, trust_pickle=trust_pickle)
        return cls(model, settings, sim, **kwargs)

    # ---------------------------------------------------------------------------------
    def observe(self, frame: Frame) -> Action | list[Action] | None:
        """Take one tick; at a decision boundary, decide and act. Returns what was applied."""
        values = np.nan_to_num(frame.values, nan=0.0, posinf=0.0, neginf=0.0)
        self._sum += values
        self._count += 1
        if frame.node_values is not None:
            nodes = np.nan_to_num(frame.node_values, nan=0.0, posinf=0.0, neginf=0.0)
            self._node_sum = nodes.copy() if self._node_sum is None else self._node_sum + nodes
        now = frame.time + self.sim.dt
        if now + 1e-9 < self._next:
            return None
        self._next += self.decision_s
        mean = self._sum / self._count
        if self._node_sum is not None:
            self.nodes.update(self._node_sum / self._count)
            self._node_sum = None
        self._sum[:] = 0.0
        self._count = 0
        self.view.last = values
        self.view.time = now
        worst = (self.nodes.worst_node()[1], self.nodes.worst_zone()[1])
        obs = self.encoder.update(mean, values, self.memory, now, min(now / self.sim.end, 1), worst)
        self.view.health_value = float(self.encoder.globals[0])
        if self.env_id == AUTOSCALE_ID:
            hour = (self.sim.scenario.workload.start_hour + now / 3600.0) % 24.0
            angle = 2.0 * math.pi * hour / 24.0
            obs = np.concatenate((obs, np.array([math.sin(angle), math.cos(angle)], np.float32)))
        self.last_obs = obs
        if now >= self.sim.end - 1e-9:
            return None
        return self._autoscale(obs, now) if self.env_id == AUTOSCALE_ID else self._remedy(obs, now)

    def _predict(self, obs: np.ndarray, mask: np.ndarray | None):
        if self.maskable:
            action, _ = self.model.predict(obs, deterministic=self.deterministic, action_masks=mask)
        else:
            action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return action

    def _remedy(self, obs: np.ndarray, now: float) -> Action | None:
        mask = self.codec.masks(self.gate) if self.maskable else None
        index = int(self._predict(obs, mask))
        action, targets = self.codec.build(index)
        if action is None:
            return None
        applied = self._apply(action, targets, now)
        if applied is not None:
            self.codec.remember(applied)
        return applied

    def _autoscale(self, obs: np.ndarray, now: float) -> list[Action]:
        names = self.statics.names
        mask = None
        if self.maskable:
            mask = np.zeros((self.statics.n, len(CHOICES)), bool)
            mask[:, 1] = True
            for s in range(self.statics.n):
                for choice in (0, 2):
                    target = self._scale_target(s, choice)
                    if target is not None:
                        proposal = ScaleTo(service=names[s], replicas=target)
                        mask[s, choice] = self.gate.check(proposal, self.view) is not None
            mask = mask.ravel()
        choices = np.asarray(self._predict(obs, mask)).reshape(-1)
        done = []
        for s, choice in enumerate(choices[: self.statics.n]):
            target = self._scale_target(s, int(choice))
            if target is None:
                continue
            applied = self._apply(ScaleTo(service=names[s], replicas=target), (s,), now)
            if applied is not None:
                done.append(applied)
        return done

    def _scale_target(self, s: int, choice: int) -> int | None:
        """Replicas a scale choice takes service `s` to (the env's rule), None to hold."""
        current = int(round(self.view.last[s, 16]))
        svc = self.sim.scenario.topology.services[self.statics.names[s]]
        cap = max(SCALE_CAP * max(svc.replicas, 1), svc.hpa.max_replicas if svc.hpa else 0)
        if CHOICES[choice] == "scale_in":
            return current - 1 if current > 1 else None
        if CHOICES[choice] == "scale_out":
            return min(current + SCALE_OUT_BY, cap) if current < cap else None
        return None

    def _apply(self, action: Action, targets: tuple[int, ...], now: float) -> Action | None:
        allowed = self.gate.check(action, self.view)
        record: dict[str, Any] = {"time": now, "proposed": action.to_dict()}
        if allowed is None:
            record["refused"] = True
            self.actions.append(record)
            return None
        try:
            at = self.sim.act(allowed)
        except ActionError as exc:
            record["error"] = str(exc)
            self.actions.append(record)
            return None
        self.gate.record(allowed, self.view)
        self.memory.note(targets, now)
        record.update({"time": at, "action": allowed.to_dict()})
        self.actions.append(record)
        return allowed
