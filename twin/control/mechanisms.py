"""How each fault kind ends: its mechanism and the remedies that end or only mitigate it.

Data, read by the fault injector (which makes it real in the twin), by the labels (the
mitigation oracle in labels.json) and by the simulated on-call engineer (who knows
Kubernetes). The AI stack never reads it: it sees telemetry only.

Where the cause lives decides what can end it, as in a Kubernetes cluster:

- **pod** (crash, latency, errors, cpu_hog, dependency_outage): state inside the running
  pods (a corrupted emptyDir cache, a leaked connection or thread pool, a runaway thread,
  a wedged store process). A container restart (what the kubelet does on its own) keeps
  the pod and its state, so it does not help; a *new* pod starts clean. Anything that
  replaces pods replaces sick ones: a pod restart (`restart_pods`, i.e. delete the pod),
  a rollback's rolling update, a drain of the node they run on. Each new pod comes up
  healthy with `p_success` (the trigger may recur: a poisoned message, a bad peer), so a
  restart of half the pods halves the trouble and the fault ends when no sick pod is left.
  More pods (a scale-out) dilute it; a failover routes around it while held.
- **version** (bad_deploy, misconfiguration, memory_leak): the code or config the
  deployment runs. Restarting runs the same image: a regression stays, a leak's memory is
  reset and the leak starts again (mitigates). A rollback ends a bad deploy (a leaky one
  too) or a misconfiguration once its rollout is done. A `memory_leak` is a leak that did
  not come with the last release (a cache that never evicts, triggered by traffic): no
  action in the cluster ends it, restarts only buy time until a fix ships.
- **client** (retry_storm): the callers' retry policy. Capping the retries into the
  service (`set_retries`, a mesh retry budget pushed to the callers) ends it; shedding load
  lets the storm drain while held, but the aggressive policy can re-ignite it.
- **link** (network_partition, packet_loss): the network between two services, outside
  the cluster's control (a cloud network event): it ends on its own schedule, or never;
  a failover to a standby in another cluster, or an open breaker, only mitigates.
- **node** (node_down, noisy_neighbour, disk_pressure, memory_pressure, nic_loss): the
  machine under the pods. Draining the node (cordon, evict: the pods are recreated on other
  nodes) ends it; a restart of one service's pods may land them back on the same node (the
  scheduler does not know the node is sick; a NotReady or pressure-tainted node is avoided).
  A down node's pods are evicted by the node controller on their own after the
  node-monitor grace period (40 s) plus the default not-ready toleration (300 s).
- **zone** (zone_outage): every node of a zone. Draining the zone reschedules its pods into
  the other zones, as far as their capacity allows; failover mitigates. On its own the
  node controller evicts after 340 s, as for one node.

`p_success` is per new pod for pod faults, per attempt otherwise; draws come from the run's
seeded streams (one per fault), so a run stays a pure function of (scenario, seed, actions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Effect = Literal["ends", "mitigates"]
# what the action must aim at for the remedy to apply:
#   service: the action's `service` is the fault's target
#   link: the action's `service` is either end of the link
#   edge: a breaker on an edge into the target (or along the link)
#   entry: any entry service (shedding acts on the whole system)
#   node: a drain of the fault's node or of its zone
#   zone: a drain of the fault's zone
Scope = Literal["service", "link", "edge", "entry", "node", "zone"]

NODE_MONITOR_GRACE_S = 40.0  # kube-controller-manager --node-monitor-grace-period
NOT_READY_TOLERATION_S = 300.0  # default tolerationSeconds for not-ready / unreachable
ROLLOUT_REPLACES_PODS = True  # a rollback is a rolling update: every pod is new afterwards


@dataclass(frozen=True)
class Remedy:
    """One action kind's effect on one fault kind."""

    action: str
    effect: Effect
    scope: Scope
    p_success: float = 1.0
    how: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "effect": self.effect,
            "scope": self.scope,
            "p_success": self.p_success,
            "how": self.how,
        }


@dataclass(frozen=True)
class Mechanism:
    """A fault kind: where its cause lives, what happens without action, and its remedies."""

    kind: str
    cause: Literal["pod", "version", "client", "link", "node", "zone"]
    summary: str
    on_its_own: str
    remedies: tuple[Remedy, ...]

    def ending(self) -> tuple[Remedy, ...]:
        return tuple(r for r in self.remedies if r.effect == "ends")

    def mitigating(self) -> tuple[Remedy, ...]:
        return tuple(r for r in self.remedies if r.effect == "mitigates")

    def remedy(self, action: str) -> Remedy | None:
        """The remedy of this action kind (the ending one first), if any."""
        for effect in ("ends", "mitigates"):
            for r in self.remedies:
                if r.action == action and r.effect == effect:
                    return r
        return None


def _pod(kind: str, summary: str, p: float, extra: tuple[Remedy, ...] = ()) -> Mechanism:
    """A pod-state fault: anything that replaces pods ends it, one new pod at a time."""
    return Mechanism(
        kind,
        "pod",
        summary,
        "lasts its scheduled duration, or until every sick pod is replaced",
        (
            Remedy("restart_pods", "ends", "service", p, "a new pod starts without the bad state"),
            Remedy("rollout_restart", "ends", "service", p, "every pod is replaced, no downtime"),
            Remedy("rollback", "ends", "service", p, "the rolling update replaces every pod"),
            Remedy("drain", "mitigates", "node", how="replaces the sick pods of that node only"),
            Remedy("failover", "mitigates", "service", how="the standby serves while held"),
            Remedy("scale_to", "mitigates", "service", how="new pods dilute the sick ones"),
            *extra,
        ),
    )


_NODE_MIT = (
    Remedy(
        "restart_pods",
        "mitigates",
        "service",
        how="new pods may be scheduled back onto the same node",
    ),
    Remedy(
        "rollout_restart",
        "mitigates",
        "service",
        how="new pods may be scheduled back onto the same node",
    ),
    Remedy("failover", "mitigates", "service", how="the standby serves while held"),
)


def _node(kind: str, summary: str, on_its_own: str) -> Mechanism:
    return Mechanism(
        kind,
        "node",
        summary,
        on_its_own,
        (
            Remedy("drain", "ends", "node", 1.0, "cordon and evict: the pods move to other nodes"),
            *_NODE_MIT,
        ),
    )


MECHANISMS: dict[str, Mechanism] = {
    m.kind: m
    for m in (
        _pod(
            "crash",
            "pods crash-loop on corrupted pod-local state (an emptyDir cache, a stale lock)",
            0.7,
        ),
        _pod("latency", "a leaked connection or thread pool inside the pods slows them", 0.7),
        _pod("errors", "the pods hold a stale credential or a poisoned cache and fail", 0.8),
        _pod("cpu_hog", "a runaway thread inside the pods burns CPU", 0.9),
        _pod(
            "bad_response",
            "an agent rewrote a method inside the running JVMs (a wrong return value, a thrown "
            "and caught exception); a new pod loads the class afresh",
            0.9,
        ),
        _pod(
            "dependency_outage",
            "the store's process is wedged (connection table full) and refuses connections",
            0.75,
            (Remedy("force_breaker", "mitigates", "edge", how="callers fail fast"),),
        ),
        Mechanism(
            "memory_leak",
            "version",
            "the running version leaks memory (a cache that never evicts, a growing map) "
            "until the OOM killer restarts the pod",
            "leaks until its scheduled end (a fix rolled forward); nothing in the cluster ends it",
            (
                Remedy(
                    "restart_pods",
                    "mitigates",
                    "service",
                    how="fresh pods start from a clean heap; the leak starts again",
                ),
                Remedy(
                    "rollout_restart",
                    "mitigates",
                    "service",
                    how="fresh pods start from a clean heap; the leak starts again",
                ),
                Remedy(
                    "rollback",
                    "mitigates",
                    "service",
                    how="the old version has the same leak; its new pods start clean",
                ),
            ),
        ),
        Mechanism(
            "bad_deploy",
            "version",
            "a regressed release: slower, failing or hungrier than the last one",
            "lasts until a fix is rolled forward (its scheduled end)",
            (
                Remedy("rollback", "ends", "service", 1.0, "the previous image comes back"),
                Remedy("failover", "mitigates", "service", how="the standby runs the old one"),
            ),
        ),
        Mechanism(
            "misconfiguration",
            "version",
            "a bad config value shipped with the deployment (timeouts, pools, queues)",
            "lasts until a corrected config is pushed (its scheduled end)",
            (
                Remedy("rollback", "ends", "service", 1.0, "the config rolls back with it"),
                Remedy("failover", "mitigates", "service", how="the standby has the old config"),
            ),
        ),
        Mechanism(
            "retry_storm",
            "client",
            "callers retry the service aggressively; every failure comes back many times",
            "lasts until the client release is fixed (its scheduled end)",
            (
                Remedy(
                    "set_retries", "ends", "service", 1.0, "a retry budget overrides the clients"
                ),
                Remedy("shed_load", "mitigates", "entry", how="less load lets the storm drain"),
                Remedy("force_breaker", "mitigates", "edge", how="callers stop calling"),
            ),
        ),
        Mechanism(
            "network_partition",
            "link",
            "the network between two services drops everything (a cloud network event)",
            "lasts its scheduled duration; nothing in the cluster ends it",
            (
                Remedy("failover", "mitigates", "link", how="the standby is on another network"),
                Remedy("force_breaker", "mitigates", "edge", how="callers fail fast"),
            ),
        ),
        Mechanism(
            "packet_loss",
            "link",
            "the network between two services loses packets (congestion, a flapping link)",
            "lasts its scheduled duration; nothing in the cluster ends it",
            (
                Remedy("failover", "mitigates", "link", how="the standby is on another network"),
                Remedy("force_breaker", "mitigates", "edge", how="callers fail fast"),
            ),
        ),
        _node(
            "node_down",
            "a node stops: its pods fail until the node is marked NotReady (40 s), then are gone",
            "the node controller evicts its pods 340 s after it went down; they are "
            "recreated where capacity allows",
        ),
        _node(
            "noisy_neighbour",
            "a pod outside the topology takes most of a node's CPU; its neighbours starve",
            "lasts until the node is drained (or its scheduled end)",
        ),
        _node(
            "disk_pressure",
            "a node's disk is nearly full: writes block (I/O wait), the node is tainted",
            "lasts until the node is drained (or its scheduled end)",
        ),
        _node(
            "memory_pressure",
            "a system daemon eats a node's memory: the kernel OOM-kills containers there; "
            "they restart in place",
            "lasts until the node is drained (or its scheduled end)",
        ),
        _node(
            "nic_loss",
            "a node's network interface drops packets: every call to or from its pods "
            "retransmits or fails",
            "lasts until the node is drained (or its scheduled end)",
        ),
        Mechanism(
            "zone_outage",
            "zone",
            "every node of a zone stops (power, cooling, the zone's network)",
            "the node controller evicts the zone's pods after 340 s; they are recreated in "
            "the other zones where capacity allows",
            (
                Remedy("drain", "ends", "zone", 1.0, "the zone's pods move to the other zones"),
                Remedy("failover", "mitigates", "service", how="the standby serves while held"),
            ),
        ),
    )
}

POD_CAUSE = frozenset(k for k, m in MECHANISMS.items() if m.cause == "pod")
REMEDY_ACTIONS = tuple(sorted({r.action for m in MECHANISMS.values() for r in m.remedies}))


def mechanism(kind: str) -> Mechanism:
    return MECHANISMS[kind]


def oracle(kind: str, target: str, peer: str | None = None, zone: str | None = None) -> dict:
    """The mitigation oracle of one fault (labels.json): which actions, aimed where, end it
    and which only mitigate it; `zone` is a node fault's zone (draining it ends it too)."""
    m = MECHANISMS[kind]

    def aims(r: Remedy) -> list[dict[str, str]]:
        if r.scope == "service":
            return [{"service": target}]
        if r.scope == "link":
            return [{"service": target}] + ([{"service": peer}] if peer else [])
        if r.scope == "edge":
            return [{"edge_to": target}] + ([{"edge_to": peer}] if peer else [])
        if r.scope == "entry":
            return [{"entry": "*"}]
        if r.scope == "node":
            if m.cause == "pod":
                return [{"node": "*"}]
            return [{"node": target}] + ([{"node": zone}] if zone else [])
        return [{"node": target}]

    def rows(effect: Effect) -> list[dict[str, Any]]:
        return [{**r.to_dict(), "aim": aims(r)} for r in m.remedies if r.effect == effect]

    return {
        "cause": m.cause,
        "mechanism": m.summary,
        "on_its_own": m.on_its_own,
        "ends": rows("ends"),
        "mitigates": rows("mitigates"),
    }


def aimed(action: Mapping[str, Any], remedy: Mapping[str, Any]) -> bool:
    """Whether an action (its to_dict form) is the remedy, aimed where the oracle says."""
    if action.get("action") != remedy.get("action"):
        return False
    for aim in remedy.get("aim") or ():
        ((key, value),) = aim.items()
        if value == "*":
            return True
        if key == "service" and action.get("service") == value:
            return True
        if key == "edge_to" and action.get("target") == value:
            return True
        if key == "entry":
            return True
        if key == "node" and action.get("node") == value:
            return True
    return False
