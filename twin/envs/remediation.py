"""`firebreak/Remediation-v0`: end an incident with as little SLO damage, cost and risk as you can.

Each episode draws a topology, a load and one fault (`RemediationDistribution`); the fault
starts after a fault-free baseline and lasts until a remedy or a human ends it. Every
`decision_s` the agent picks one action (Discrete), then the twin runs to the next decision.

Actions (index layout, see `RemediationEnv.action_names`):
- 0 `noop`; 1 `escalate` (page a human: after `escalation_fix_s` the human ends the fault,
  as `agents.oncall` would, at the cost of their time); 2 `shed` (`shed_share` of the main
  entry's arrivals are refused); 3 `unshed`; 4 `drain_node` (cordon and evict the node the
  node series show worst, `twin.envs.nodes`); 5 `drain_zone` (every node of the worst zone);
- then, per target, `restart` (half its pods), `scale_up` (+2 replicas), `rollback`,
  `failover` (all calls to the standby), `failback` (calls back to the primary). Targets
  are the services in topology order (layout ``services``) or the `top_k` services the RCA
  ranks highest (layout ``ranked``: topology-agnostic).

`action_masks()` hides what is invalid now (an empty rank, failing back with no failover,
escalating twice, scaling past the cap) and what the gate refuses (with the guardrails
wired in by `agents.rl`, everything `Guardrails.check` would refuse). An unmasked policy
that picks a refused action gets nothing applied and pays `refused`.

Faults are `until-remedied` by default: only their ending remedy (`twin.control.mechanisms`:
a restart or rollback of the sick service, a rollback of a bad version, a drain of a sick
node or zone), a human, or the control plane's own eviction ends them. The episode's
summary says whether the first response was the right remedy and when the right one came
(`RemedyTracker`); the reward charges a wrong first response.

Reward (per decision, all costs, reward = -cost; weights in `RemediationWeights`):
    slo_bad_minute  × (bad requests / all requests at the entries) × decision_s / 60
  + slo_violation   × [the interval breaks the SLO objective] × decision_s / 60
  + action          × (1 per applied action)
  + capacity_lost   × (pods a restart takes out)
  + lost_feature    × [a rollback of a good deploy]
  + human_minute    × (on-call minutes an escalation costs)
  + replica_hour    × (replicas above the declared ones + standby replicas) × hours
  + refused         × (1 per action the gate refused)
  + wrong_first_remedy × [the first response to a remediable fault does not end it]
  + unresolved_minute × [the fault is still on at the end of the interval] × decision_s / 60
    (a mitigation such as a failover or shedding may keep the SLO, but the cause remains)
  - right_remedy    × [this action is the episode's first right remedy: a remedy that ends
    this kind of fault, aimed where the oracle says; a restart of half the pods may need
    repeating before the fault is over]
Bad requests are failed, shed and slower than the SLO's latency, counted per tick at the
entries as the twin's SLO tracker counts them; shed requests are failed requests, so
shedding load never buys a better score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from twin.control.actions import (
    Action,
    Escalate,
    Failover,
    RestartPods,
    Rollback,
    ScaleTo,
    ShedLoad,
)
from twin.control.remedy_actions import Drain
from twin.envs.base import (
    ActionGate,
    GateView,
    TwinEnv,
    TwinFailure,
    gate_permits,
    window_mttr,
)
from twin.envs.distribution import (
    REMEDIATION_FAULTS,
    EnvConfigError,
    RemediationDistribution,
)
from twin.envs.encoding import LAYOUTS, AgentMemory, ObservationEncoder, Scorer, ServiceStatics
from twin.envs.nodes import NodeWatch
from twin.envs.remedy_tracker import RemedyTracker
from twin.fields import M
from twin.scenario.schema import INFRA_FAULT_KINDS

GLOBAL_ACTIONS = ("noop", "escalate", "shed", "unshed", "drain_node", "drain_zone")
TARGET_ACTIONS = ("restart", "scale_up", "rollback", "failover", "failback")
# every shipped topology but train-ticket, which stays unseen for generalisation checks
TRAINING_TOPOLOGIES = ("online-boutique", "sock-shop", "hotel-reservation", "social-network")
DESIRED = M["desired_replicas"]
SCALE_UP_BY = 2
SCALE_CAP = 4  # scale_up never past this many times the declared replicas


@dataclass(frozen=True)
class RemediationWeights:
    """Cost weights; one unit is one minute of every request failing."""

    slo_bad_minute: float = 1.0
    slo_violation: float = 0.5
    action: float = 0.1  # an action's own cost: acting on a guess is never free
    capacity_lost: float = 0.01
    lost_feature: float = 0.5
    human_minute: float = 0.01
    replica_hour: float = 0.05
    refused: float = 0.05
    wrong_first_remedy: float = 0.5  # about what a wasted restart and its wait cost
    unresolved_minute: float = 0.2  # a fault left running: degraded redundancy, risk, toil
    right_remedy: float = 1.0  # paid once, for the first right remedy (see RemedyTracker)


def action_index(kind: str, slot: int | None, n_targets: int) -> int:
    """The index of (kind, target slot) in a remediation action space with `n_targets`."""
    if kind in GLOBAL_ACTIONS:
        return GLOBAL_ACTIONS.index(kind)
    return len(GLOBAL_ACTIONS) + TARGET_ACTIONS.index(kind) * n_targets + int(slot or 0)


def decode(index: int, n_targets: int) -> tuple[str, int | None]:
    """(action kind, target slot) of an action index."""
    index = int(index)
    if index < len(GLOBAL_ACTIONS):
        return GLOBAL_ACTIONS[index], None
    kind, slot = divmod(index - len(GLOBAL_ACTIONS), n_targets)
    return TARGET_ACTIONS[kind], slot


class RemediationCodec:
    """Action indices ↔ twin actions, from the agent's view of the present: the env and the
    policy runner (which drives a live simulation) share it, so an index means the same."""

    def __init__(
        self,
        statics: ServiceStatics,
        encoder: ObservationEncoder,
        memory: AgentMemory,
        view: GateView,
        main_entry: int,
        shed_share: float,
        nodes: NodeWatch | None = None,
    ) -> None:
        self.statics = statics
        self.nodes = nodes if nodes is not None else NodeWatch(None, 1)
        self.encoder = encoder
        self.memory = memory
        self.view = view
        self.main_entry = main_entry
        self.shed_share = shed_share
        self.n_targets = encoder.top_k if encoder.layout == "ranked" else statics.n
        self.n_actions = len(GLOBAL_ACTIONS) + len(TARGET_ACTIONS) * self.n_targets
        self._made: dict[tuple, Action] = {}
        self._layout = [(i, *decode(i, self.n_targets)) for i in range(1, self.n_actions)]

    def _make(self, cls: type[Action], **fields: Any) -> Action:
        """`cls(**fields)`, made once: actions are frozen values, and masks build every
        index at every step, so validating them anew each time cost more than the step."""
        key = (cls, *fields.items())
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = cls(**fields)
        return made

    def target_service(self, slot: int) -> int | None:
        """The service index a target slot names now (None for an empty rank)."""
        if self.encoder.layout == "services":
            return slot
        ranking = self.encoder.ranking
        return int(ranking[slot]) if slot < len(ranking) else None

    def build(self, index: int) -> tuple[Action | None, tuple[int, ...]]:
        """The twin action an index stands for now, and the services it touches; (None, ())
        for noop and for anything invalid in the present state."""
        return self._build(*decode(index, self.n_targets))

    def _build(self, kind: str, slot: int | None) -> tuple[Action | None, tuple[int, ...]]:
        mem, names = self.memory, self.statics.names
        if kind == "noop":
            return None, ()
        if kind == "escalate":
            if mem.escalated:
                return None, ()
            top = self.target_service(0) if self.encoder.layout == "ranked" else None
            service = names[top] if top is not None else None
            return self._make(Escalate, reason="the RL agent escalated", service=service), ()
        if kind == "drain_node":
            node, _ = self.nodes.worst_node()
            return (self._make(Drain, node=node), ()) if node is not None else (None, ())
        if kind == "drain_zone":
            zone, _ = self.nodes.worst_zone()
            return (self._make(Drain, node=zone), ()) if zone is not None else (None, ())
        if kind in ("shed", "unshed"):
            e = self.main_entry
            share = self.shed_share if kind == "shed" else 0.0
            if (kind == "shed" and mem.shed[e] >= share) or (kind == "unshed" and mem.shed[e] <= 0):
                return None, ()
            return self._make(ShedLoad, entry=names[e], share=share), (e,)
        s = self.target_service(slot)
        if s is None:
            return None, ()
        name = names[s]
        if kind == "restart":
            return self._make(RestartPods, service=name, share=0.5), (s,)
        if kind == "scale_up":
            current = int(round(self.view.last[s, DESIRED]))
            cap = int(SCALE_CAP * self.statics.replicas[s])
            if current >= cap:
                return None, ()
            replicas = min(current + SCALE_UP_BY, cap)
            return self._make(ScaleTo, service=name, replicas=replicas), (s,)
        if kind == "rollback":
            return self._make(Rollback, service=name), (s,)
        if kind == "failover":
            if mem.failover[s] >= 1.0:
                return None, ()
            return self._make(Failover, service=name, share=1.0), (s,)
        if mem.failover[s] <= 0.0:  # failback
            return None, ()
        return self._make(Failover, service=name, share=0.0), (s,)

    def masks(self, gate: ActionGate) -> np.ndarray:
        """True where an action is valid now and `gate` would let it through (noop always)."""
        mask = np.zeros(self.n_actions, bool)
        mask[0] = True
        build = self._build
        built = [(i, build(kind, slot)[0]) for i, kind, slot in self._layout]
        valid = [(i, a) for i, a in built if a is not None]
        allowed = gate_permits(gate, [a for _, a in valid], self.view)
        for (i, _), ok in zip(valid, allowed, strict=True):
            mask[i] = ok
        return mask

    def remember(self, applied: Action) -> None:
        """Note what an applied action set (failover and shed shares, an escalation)."""
        mem, index = self.memory, self.view._index
        if applied.kind == "failover":
            mem.failover[index[applied.service]] = applied.share
        elif applied.kind == "shed_load":
            mem.shed[index[applied.entry]] = applied.share
        elif applied.kind == "escalate":
            mem.escalated = True
        elif applied.kind == "drain":
            self.nodes.note_drain(applied.node)


class RemediationEnv(TwinEnv):
    """The remediation environment (see the module docstring for spaces and reward)."""

    def __init__(
        self,
        topologies: tuple[str, ...] | list[str] | str = TRAINING_TOPOLOGIES,
        *,
        observation: str = "ranked",
        top_k: int = 5,
        decision_s: float = 10.0,
        episode_s: float = 1200.0,
        tick_s: float = 2.0,
        fault_kinds: tuple[str, ...] | None = None,
        fault_start_s: tuple[float, float] = (120.0, 240.0),
        load: tuple[float, float] = (0.7, 1.2),
        shed_share: float = 0.3,
        escalation_fix_s: float = 600.0,
        infrastructure: bool = True,
        weights: RemediationWeights | dict | None = None,
        scorer: Scorer | None = None,
        gate: ActionGate | None = None,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(topologies, str):
            topologies = (topologies,)
        if observation not in LAYOUTS:
            raise EnvConfigError(
                f"observation: unknown layout {observation!r} (layouts: {', '.join(LAYOUTS)})"
            )
        if not isinstance(top_k, int) or top_k < 1:
            raise EnvConfigError(f"top_k: must be an integer >= 1, got {top_k!r}")
        if not 0.0 < shed_share <= 1.0:
            raise EnvConfigError(f"shed_share: must be in (0, 1], got {shed_share!r}")
        kw: dict[str, Any] = {}
        if fault_kinds is not None:
            kw["fault_kinds"] = tuple(fault_kinds)
        elif not infrastructure:  # the default kinds but those that need nodes and zones
            kw["fault_kinds"] = tuple(k for k in REMEDIATION_FAULTS if k not in INFRA_FAULT_KINDS)
        dist = RemediationDistribution(
            topologies=tuple(topologies),
            episode_s=float(episode_s),
            tick_s=float(tick_s),
            fault_start_s=(float(fault_start_s[0]), float(fault_start_s[1])),
            load=(float(load[0]), float(load[1])),
            infrastructure=bool(infrastructure),
            **kw,
        )
        super().__init__(dist, decision_s, scorer, gate, observation, top_k)
        if isinstance(weights, dict):
            weights = RemediationWeights(**weights)
        self.weights = weights or RemediationWeights()
        self.shed_share = float(shed_share)
        self.escalation_fix_s = float(escalation_fix_s)
        self.render_mode = render_mode
        n_targets = top_k if observation == "ranked" else self.encoder.n_services
        self.n_targets = n_targets
        self.action_space = gym.spaces.Discrete(
            len(GLOBAL_ACTIONS) + len(TARGET_ACTIONS) * n_targets
        )
        enc = self.encoder
        self.observation_space = gym.spaces.Box(enc.low, enc.high, dtype=np.float32)
        self.settings = {
            "env": "firebreak/Remediation-v0",
            "topologies": list(dist.topologies),
            "observation": observation,
            "top_k": top_k,
            "decision_s": self.decision_s,
            "episode_s": dist.episode_s,
            "tick_s": dist.tick_s,
            "fault_kinds": list(dist.fault_kinds),
            "fault_start_s": list(dist.fault_start_s),
            "load": list(dist.load),
            "shed_share": self.shed_share,
            "escalation_fix_s": self.escalation_fix_s,
            "infrastructure": dist.infrastructure,
            "weights": asdict(self.weights),
        }

    # -- action encoding ----------------------------------------------------------------
    def action_names(self) -> list[str]:
        """Readable name of every action index (targets as ranks or service names)."""
        names = list(GLOBAL_ACTIONS)
        for kind in TARGET_ACTIONS:
            for t in range(self.n_targets):
                names.append(f"{kind}:{t}")
        return names

    def decode(self, index: int) -> tuple[str, int | None]:
        """(action kind, target slot) of an action index."""
        return decode(index, self.n_targets)

    def build(self, index: int) -> tuple[Action | None, tuple[int, ...]]:
        """The twin action an index stands for now (see `RemediationCodec.build`)."""
        return self.codec.build(index)

    def action_masks(self) -> np.ndarray:
        """True where an action is valid now and the gate would let it through."""
        return self.codec.masks(self.gate)

    # -- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        scenario = self.distribution.draw(self.np_random)
        self._start(scenario)
        rates = {c.entry: 0.0 for c in scenario.workload.classes}
        for c in scenario.workload.classes:
            rates[c.entry] += c.rate
        index = {n: i for i, n in enumerate(self.statics.names)}
        entry_order = [index[e] for e in sorted(rates, key=lambda e: (-rates[e], e))]
        self.nodes = NodeWatch(scenario.infrastructure, self.encoder.warmup)
        self.codec = RemediationCodec(
            self.statics,
            self.encoder,
            self.memory,
            self.view,
            entry_order[0],
            self.shed_share,
            self.nodes,
        )
        self.remedies = RemedyTracker(scenario)
        self._fix_at: float | None = None
        self._return = 0.0
        block = self._advance()
        obs = self._observe(block)
        return obs, {"topology": scenario.topology.name}  # the fault stays hidden

    def _observe(self, block: np.ndarray) -> np.ndarray:
        mean = self.interval_mean(block)
        sim = self.sim
        nodes = self._node_block
        self.nodes.update(nodes)
        worst = (self.nodes.worst_node()[1], self.nodes.worst_zone()[1])
        obs = self.encoder.update(mean, block[-1], self.memory, sim.now, sim.now / sim.end, worst)
        self.view.health_value = float(self.encoder.globals[0])
        self._last_obs = obs
        return obs

    def step(self, action):
        self._check_running()
        w = self.weights
        cost = 0.0
        right: bool | None = None
        proposed, targets = self.build(int(action))
        applied_kind = None
        refused = False
        if proposed is not None:
            fault_on = 0 in self.sim.faults.active  # before a remedy that ends it at once
            applied, profile = self._apply(proposed, targets)
            if applied is None:
                refused = True
                cost += w.refused
            else:
                applied_kind = applied.kind
                cost += self._action_cost(profile)
                self._remember(applied)
                first = self.remedies.first_right
                none_right_yet = self.remedies.right_after_s is None
                right = self.remedies.note(applied, self.sim.now, fault_on)
                if first is None and right is False:
                    cost += w.wrong_first_remedy
                if right and none_right_yet:
                    cost -= w.right_remedy
        try:
            block = self._advance()
        except TwinFailure as exc:
            worst = self.decision_s / 60.0 * (w.slo_bad_minute + w.slo_violation)
            reward, repro = self._fail(exc, worst)
            self._return += reward - cost
            summary = {**self.summary(), "twin_failure": repro}
            info = {"bad_share": 1.0, "violated": True, "applied": applied_kind}
            info.update(refused=refused, firebreak=summary)
            return self._last_obs, reward - cost, False, True, info
        slo = self.slo
        minutes = self.decision_s / 60.0
        violated = self._violated(slo.total, slo.failed, slo.served, slo.slow)
        cost += minutes * (w.slo_bad_minute * slo.bad_share + w.slo_violation * violated)
        cost += w.replica_hour * self._extra_replicas() * self.decision_s / 3600.0
        still_on = 0 in self.sim.faults.active
        self.remedies.observe(self.sim.now, still_on)
        cost += w.unresolved_minute * still_on * minutes
        if self._fix_at is not None and self.sim.now >= self._fix_at:
            self._fix_at = np.inf
            self._stop_faults()
        obs = self._observe(block)
        reward = -cost
        self._return += reward
        truncated = self._step_i >= self._steps
        info = {
            "bad_share": slo.bad_share,
            "violated": violated,
            "applied": applied_kind,
            "refused": refused,
            "right_remedy": right,
        }
        if truncated:
            info["firebreak"] = self.summary()
        return obs, reward, False, truncated, info

    def _action_cost(self, profile) -> float:
        w = self.weights
        return (
            w.action
            + w.capacity_lost * profile.capacity_lost
            + w.lost_feature * profile.loses_feature
            + w.human_minute * profile.human_minutes
        )

    def _remember(self, applied: Action) -> None:
        self.codec.remember(applied)
        if applied.kind == "escalate":
            self._fix_at = self.sim.now + self.escalation_fix_s

    def _extra_replicas(self) -> float:
        desired = self.view.last[:, 16]
        extra = np.maximum(desired - self.statics.replicas, 0.0).sum()
        return float(extra + sum(self.sim.pods.standby))

    def summary(self) -> dict[str, Any]:
        """The episode's figures: MTTR as the rehearsal defines it, SLO minutes, actions."""
        fault = self.scenario.faults[0]
        good = self.good_windows()
        width = self._slo.window_s
        end = fault.start + fault.duration if fault.duration is not None else self.sim.end
        mttr, censored = window_mttr(good, width, fault.start, end)
        return {
            "topology": self.scenario.topology.name,
            "fault": fault.kind,
            "target": fault.target,
            "fault_start_s": fault.start,
            "mttr_s": mttr,
            "censored": censored,
            "slo_violating_min": float((~good).sum() * width / 60.0),
            "actions": self.stats["actions"],
            "refused": self.stats["refused"],
            "nonfinite": self.stats["nonfinite"],
            "twin_failures": self.stats["twin_failures"],
            "escalated": self.memory.escalated,
            **self.remedies.summary(),
            "return": self._return,
        }
