"""`firebreak/Autoscale-v0`: decide capacity per service against daily cycles, sales and surges.

Each episode draws a load (`AutoscaleDistribution`: a daily cycle from a random hour, at
random a calendar sale and an unannounced surge) on a topology whose HPAs are removed:
the agent is the autoscaler. Every `decision_s` it says, per service, scale in by one,
hold, or scale out by `SCALE_OUT_BY` (MultiDiscrete, 3 per service); new pods go through
their start-up delay as in the twin.

Observation: the ``services`` layout of `encoding` (one row per service) plus the hour of
day as (sin, cos), so a policy can learn the daily cycle.

Reward (per decision, reward = -cost; weights in `AutoscaleWeights`):
    slo_bad_minute × (bad requests / all requests at the entries) × decision_s / 60
  + slo_violation  × [the interval breaks the SLO objective] × decision_s / 60
  + replica_hour   × (desired replicas over all services) × decision_s / 3600
  + refused        × (scalings the gate refused)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from twin.control.actions import ScaleTo
from twin.envs.base import ActionGate, TwinEnv, TwinFailure
from twin.envs.distribution import AutoscaleDistribution, EnvConfigError, topology
from twin.envs.encoding import Scorer

SCALE_OUT_BY = 2
SCALE_CAP = 4  # never past this many times the declared replicas (or the HPA's maximum)
CHOICES = ("scale_in", "hold", "scale_out")


@dataclass(frozen=True)
class AutoscaleWeights:
    """Cost weights; one unit is one minute of every request failing."""

    slo_bad_minute: float = 1.0
    slo_violation: float = 0.5
    replica_hour: float = 0.05
    refused: float = 0.01


class AutoscaleEnv(TwinEnv):
    """The autoscaling environment (see the module docstring for spaces and reward)."""

    def __init__(
        self,
        topologies: tuple[str, ...] | list[str] | str = ("online-boutique",),
        *,
        decision_s: float = 60.0,
        episode_s: float = 6 * 3600.0,
        tick_s: float = 10.0,
        load: tuple[float, float] = (0.8, 1.3),
        weights: AutoscaleWeights | dict | None = None,
        scorer: Scorer | None = None,
        gate: ActionGate | None = None,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(topologies, str):
            topologies = (topologies,)
        dist = AutoscaleDistribution(
            topologies=tuple(topologies),
            episode_s=float(episode_s),
            tick_s=float(tick_s),
            load=(float(load[0]), float(load[1])),
        )
        if len(dist.topologies) != 1:
            raise EnvConfigError(
                f"topologies: Autoscale-v0 takes one topology, got {', '.join(dist.topologies)}"
            )
        super().__init__(dist, decision_s, scorer, gate, "services", 1)
        if isinstance(weights, dict):
            weights = AutoscaleWeights(**weights)
        self.weights = weights or AutoscaleWeights()
        self.render_mode = render_mode
        topo = topology(dist.topologies[0])
        n = len(topo.services)
        self.n_services = n
        self.caps = np.array(
            [
                max(SCALE_CAP * max(s.replicas, 1), s.hpa.max_replicas if s.hpa else 0)
                for s in topo.services.values()
            ]
        )
        self.action_space = gym.spaces.MultiDiscrete([len(CHOICES)] * n)
        enc = self.encoder
        low = np.concatenate((enc.low, [-1.0, -1.0])).astype(np.float32)
        high = np.concatenate((enc.high, [1.0, 1.0])).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.settings = {
            "env": "firebreak/Autoscale-v0",
            "topologies": list(dist.topologies),
            "observation": "services",
            "decision_s": self.decision_s,
            "episode_s": dist.episode_s,
            "tick_s": dist.tick_s,
            "load": list(dist.load),
            "weights": asdict(self.weights),
        }

    def _target(self, s: int, choice: int) -> int | None:
        """Replicas service `s` goes to for a choice; None for hold or an invalid one."""
        current = int(round(self.view.last[s, 16]))
        if choice == 0:
            return current - 1 if current > 1 else None
        if choice == 2:
            return (
                min(current + SCALE_OUT_BY, int(self.caps[s])) if current < self.caps[s] else None
            )
        return None

    def action_masks(self) -> np.ndarray:
        """Per service [scale_in, hold, scale_out], concatenated (MaskablePPO's layout)."""
        mask = np.zeros((self.n_services, len(CHOICES)), bool)
        mask[:, 1] = True
        names = self.statics.names
        for s in range(self.n_services):
            for choice in (0, 2):
                target = self._target(s, choice)
                if target is not None:
                    action = ScaleTo(service=names[s], replicas=target)
                    mask[s, choice] = self.gate.check(action, self.view) is not None
        return mask.ravel()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._start(self.distribution.draw(self.np_random))
        self._return = 0.0
        self._replica_hours = 0.0
        block = self._advance()
        return self._observe(block), {"topology": self.scenario.topology.name}

    def _observe(self, block: np.ndarray) -> np.ndarray:
        sim = self.sim
        obs = self.encoder.update(
            self.interval_mean(block), block[-1], self.memory, sim.now, sim.now / sim.end
        )
        self.view.health_value = float(self.encoder.globals[0])
        hour = (self.scenario.workload.start_hour + sim.now / 3600.0) % 24.0
        angle = 2.0 * math.pi * hour / 24.0
        hour_features = np.array([math.sin(angle), math.cos(angle)], np.float32)
        self._last_obs = np.concatenate((obs, hour_features))
        return self._last_obs

    def step(self, action):
        self._check_running()
        w = self.weights
        choices = np.asarray(action, dtype=np.int64).reshape(-1)
        if choices.shape != (self.n_services,):
            raise ValueError(f"action: expected {self.n_services} choices, got {choices.shape}")
        cost = 0.0
        refused = 0
        names = self.statics.names
        for s in np.flatnonzero(choices != 1):
            target = self._target(int(s), int(choices[s]))
            if target is None:
                continue
            applied, _ = self._apply(ScaleTo(service=names[s], replicas=target), (int(s),))
            if applied is None:
                refused += 1
        cost += w.refused * refused
        try:
            block = self._advance()
        except TwinFailure as exc:
            worst = self.decision_s / 60.0 * (w.slo_bad_minute + w.slo_violation)
            reward, repro = self._fail(exc, worst)
            self._return += reward - cost
            info = {"bad_share": 1.0, "violated": True, "refused": refused}
            info["firebreak"] = {**self.summary(), "twin_failure": repro}
            return self._last_obs, reward - cost, False, True, info
        slo = self.slo
        minutes = self.decision_s / 60.0
        violated = self._violated(slo.total, slo.failed, slo.served, slo.slow)
        cost += minutes * (w.slo_bad_minute * slo.bad_share + w.slo_violation * violated)
        hours = float(block[-1][:, 16].sum()) * self.decision_s / 3600.0
        self._replica_hours += hours
        cost += w.replica_hour * hours
        obs = self._observe(block)
        reward = -cost
        self._return += reward
        truncated = self._step_i >= self._steps
        info = {"bad_share": slo.bad_share, "violated": violated, "refused": refused}
        if truncated:
            info["firebreak"] = self.summary()
        return obs, reward, False, truncated, info

    def summary(self) -> dict[str, Any]:
        good = self.good_windows()
        width = self._slo.window_s
        return {
            "topology": self.scenario.topology.name,
            "slo_adherence": float(good.mean()) if len(good) else None,
            "slo_violating_min": float((~good).sum() * width / 60.0),
            "replica_hours": self._replica_hours,
            "actions": self.stats["actions"],
            "refused": self.stats["refused"],
            "nonfinite": self.stats["nonfinite"],
            "twin_failures": self.stats["twin_failures"],
            "return": self._return,
        }
