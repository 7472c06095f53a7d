"""Pods of each deployment: start-up delay, crashes, CrashLoopBackOff, OOM kills, scaling.

A pod is `starting` until its start-up delay passes, then `ready`; a crashed pod waits its
back-off (10 s doubling, capped at 5 min, as Kubernetes does) and starts again, in place.
With infrastructure (`twin.infra.cluster`) every new pod is first scheduled onto a node; one
that fits nowhere stays `pending`; a pod on a node that went NotReady is `lost` (its
ReplicaSet still counts it) until the node returns or the pod is evicted and recreated.
Deleting a pod (a restart action, an eviction, a drain) makes a new pod, scheduled anew,
which may land on the same node. The flow kernel sees only the count of ready pods per
service.

Two things outside the primary deployments are kept here too because they are what the
run's cost accounting reads: the standby deployments a failover runs in another cluster
(their replica-seconds), and the features lost to rollbacks of deploys that were good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twin import fields as f

if TYPE_CHECKING:
    from twin.flow.engine import Simulation

BACKOFF_BASE_S = 10.0
BACKOFF_CAP_S = 300.0
BACKOFF_RESET_S = 600.0  # a pod that ran this long without crashing starts its back-off anew


@dataclass
class Pod:
    """One replica; `generation` invalidates timers scheduled for an earlier life."""

    pod_id: str
    phase: str  # pending | starting | ready | backoff | lost | terminated
    ready_at: float = 0.0
    restarts: int = 0
    generation: int = 0
    crash_looping: bool = False
    node: int = -1  # index of the node it is bound to (-1: none, or no infrastructure)
    sick: set[int] = field(default_factory=set)  # pod-state faults it carries (by index)


@dataclass
class Deployment:
    name: str
    index: int
    startup_s: float
    pods: list[Pod] = field(default_factory=list)
    spec_replicas: int = 0
    next_id: int = 0


class PodController:
    """Keeps every deployment's pods and the kernel's ready count in step."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.deployments: list[Deployment] = []
        n = sim.topo.n_services
        self.leak_since = [0.0] * n
        self.standby = [0] * n  # replicas of each service's standby deployment
        self._standby_since = [0.0] * n
        self._standby_seconds = [0.0] * n
        self._standby_plan = [0] * n  # bumps when a later failover supersedes a resize
        self.features_lost: list[tuple[float, str]] = []  # (when, service)
        self.cluster = getattr(sim, "cluster", None)
        for i, (name, svc) in enumerate(sim.scenario.topology.services.items()):
            dep = Deployment(
                name=name, index=i, startup_s=svc.startup_s, spec_replicas=svc.replicas
            )
            self.deployments.append(dep)
        for _ in range(max((d.spec_replicas for d in self.deployments), default=0)):
            for dep in self.deployments:  # round by round, so spreading sees every service
                if len(dep.pods) < dep.spec_replicas:
                    pod = self._new_pod(dep)
                    placed = self.cluster is None or self.cluster.place(dep, pod)
                    pod.phase, pod.ready_at = ("ready", 0.0) if placed else ("pending", 0.0)
        for dep in self.deployments:
            self._sync(dep)

    # -- queries ---------------------------------------------------------------------------
    def ready(self, index: int) -> int:
        return sum(p.phase == "ready" for p in self.deployments[index].pods)

    def live_pods(self, index: int) -> list[Pod]:
        return [p for p in self.deployments[index].pods if p.phase != "terminated"]

    def node_name(self, pod: Pod) -> str | None:
        return None if self.cluster is None or pod.node < 0 else self.cluster.names[pod.node]

    # -- transitions ---------------------------------------------------------------------
    def _new_pod(self, dep: Deployment) -> Pod:
        pod = Pod(pod_id=f"{dep.name}-{dep.next_id}", phase="starting")
        dep.next_id += 1
        dep.pods.append(pod)
        faults = getattr(self.sim, "faults", None)
        if faults is not None:
            faults.pod_born(dep.index, pod)
        return pod

    def _launch(self, dep: Deployment, pod: Pod) -> None:
        """Schedule a new (or recreated) pod, then start it; Pending if no node fits."""
        if self.cluster is not None and not self.cluster.place(dep, pod):
            if pod.phase != "pending":
                pod.phase = "pending"
                pod.generation += 1
                self.sim.events.emit(
                    self.sim.env.now, "pod_pending", service=dep.name, pod=pod.pod_id
                )
            return
        self._start(dep, pod)

    def retry_pending(self) -> None:
        """Capacity changed: schedule the Pending pods that now fit, oldest first."""
        if self.cluster is None:
            return
        for dep in self.deployments:
            pending = [p for p in dep.pods if p.phase == "pending"]
            for pod in pending:
                if self.cluster.place(dep, pod):
                    self._start(dep, pod)
            if pending:
                self._sync(dep)

    def _start(self, dep: Deployment, pod: Pod) -> None:
        """Begin the start-up delay; the pod becomes ready (or crashes again) after it."""
        pod.phase = "starting"
        pod.generation += 1
        gen = pod.generation
        env = self.sim.env

        def become_ready(_event: object) -> None:
            if pod.generation != gen or pod.phase != "starting":
                return
            if pod.crash_looping:
                self.crash(dep.index, pod, reason="CrashLoopBackOff")
                return
            pod.phase, pod.ready_at = "ready", env.now
            self.sim.events.emit(env.now, "pod_ready", service=dep.name, pod=pod.pod_id)
            self._sync(dep)

        env.timeout(dep.startup_s).callbacks.append(become_ready)

    def crash(self, index: int, pod: Pod, reason: str) -> None:
        """Kill a pod's container: its in-flight work is lost; it restarts after its back-off."""
        dep = self.deployments[index]
        env = self.sim.env
        if pod.phase == "ready":
            self._drop_inflight(index)
        if pod.phase == "ready" and env.now - pod.ready_at >= BACKOFF_RESET_S:
            pod.restarts = 0
        delay = min(BACKOFF_BASE_S * 2.0 ** max(pod.restarts - 1, 0), BACKOFF_CAP_S)
        delay = 0.0 if pod.restarts == 0 else delay
        pod.restarts += 1
        pod.phase = "backoff"
        pod.generation += 1
        gen = pod.generation
        self.sim.events.emit(
            env.now,
            "pod_crash",
            service=dep.name,
            pod=pod.pod_id,
            reason=reason,
            restarts=pod.restarts,
            backoff_s=delay,
        )
        self._sync(dep)

        def restart(_event: object) -> None:
            if pod.generation == gen and pod.phase == "backoff":
                self._start(dep, pod)

        env.timeout(delay).callbacks.append(restart)

    def oom_kill(self, index: int) -> None:
        """The kernel saw a replica over its memory limit: kill the one that leaked longest."""
        ready = [p for p in self.deployments[index].pods if p.phase == "ready"]
        if ready:
            oldest = min(ready, key=lambda p: (p.ready_at, p.pod_id))
            self.crash(index, oldest, reason="OOMKilled")

    def scale_to(self, index: int, replicas: int, reason: str) -> None:
        """Change the spec: new pods start up; surplus pods drain and go (not-ready first)."""
        dep = self.deployments[index]
        replicas = max(int(replicas), 0)
        live = self.live_pods(index)
        before = dep.spec_replicas
        dep.spec_replicas = replicas
        if replicas > len(live):
            for _ in range(replicas - len(live)):
                self._launch(dep, self._new_pod(dep))
        elif replicas < len(live):
            rank = {"pending": -1, "starting": 0, "backoff": 0, "lost": 0, "ready": 1}
            victims = sorted(live, key=lambda p: (rank[p.phase], -p.ready_at, p.pod_id))
            for pod in victims[: len(live) - replicas]:
                self._terminate(dep, pod)
        dep.pods = [p for p in dep.pods if p.phase != "terminated"]
        if replicas < len(live) and self.cluster is not None:
            self.retry_pending()  # the freed requests may fit a Pending pod
        if replicas != before:
            self.sim.events.emit(
                self.sim.env.now,
                "scale",
                service=dep.name,
                replicas_from=before,
                replicas_to=replicas,
                reason=reason,
            )
        self._sync(dep)

    def restart_pods(self, index: int, pods: list[Pod], reason: str) -> None:
        """Delete pods so their ReplicaSet recreates them: each new pod is scheduled anew
        (it may land on the same node), starts clean of pod state (or not: see
        `FaultInjector.pod_born`) and goes through its start-up delay."""
        dep = self.deployments[index]
        for pod in pods:
            if pod.phase == "ready":
                self._drop_inflight(index)
            self.sim.events.emit(
                self.sim.env.now, "pod_restart", service=dep.name, pod=pod.pod_id, reason=reason
            )
            pod.restarts = 0  # a new pod: a fresh back-off
            self._renew(dep, pod)
        self._sync(dep)
        self.retry_pending()

    def _renew(self, dep: Deployment, pod: Pod) -> None:
        """The same slot, a new pod: unbound, pod state drawn afresh, scheduled, started."""
        if self.cluster is not None:
            self.cluster.unbind(dep, pod)
        pod.generation += 1
        faults = getattr(self.sim, "faults", None)
        if faults is not None:
            faults.pod_born(dep.index, pod)
        self._launch(dep, pod)

    def _terminate(self, dep: Deployment, pod: Pod) -> None:
        pod.phase = "terminated"
        pod.generation += 1
        if self.cluster is not None:
            self.cluster.unbind(dep, pod)
        faults = getattr(self.sim, "faults", None)
        if faults is not None and pod.sick:
            faults.pod_gone(dep.index)

    def evict(self, dep: Deployment, pod: Pod, reason: str) -> None:
        """Evict a pod from its node: it is deleted and its ReplicaSet recreates it."""
        if pod.phase == "ready":
            self._drop_inflight(dep.index)
        self.sim.events.emit(
            self.sim.env.now,
            "pod_evicted",
            service=dep.name,
            pod=pod.pod_id,
            node=self.node_name(pod),
            reason=reason,
        )
        pod.restarts = 0
        self._renew(dep, pod)
        self._sync(dep)

    def lose(self, dep: Deployment, pod: Pod) -> None:
        """Its node went NotReady: the pod stops serving (its ReplicaSet still counts it)."""
        if pod.phase in ("terminated", "pending", "lost"):
            return
        pod.phase = "lost"
        pod.generation += 1
        self._sync(dep)

    def restart_in_place(self, dep: Deployment, pod: Pod) -> None:
        """The kubelet starts the pod's containers again on the same node (state kept)."""
        self._start(dep, pod)
        self._sync(dep)

    def refresh(self, index: int, pods: list[Pod] | None = None) -> None:
        """New pods take over from `pods` (all live ones by default) as in a rolling update:
        the surge pods took the traffic meanwhile, so no capacity is lost. Each new pod is
        scheduled anew (it stays where it was when no other node fits), starts with a clean
        heap and draws its pod state afresh; a pod that was not serving restarts as usual."""
        dep = self.deployments[index]
        now = self.sim.env.now
        faults = getattr(self.sim, "faults", None)
        chosen = [p for p in (dep.pods if pods is None else pods) if p.phase != "terminated"]
        for pod in chosen:
            if pod.phase != "ready":
                self._renew(dep, pod)
                continue
            self.sim.events.emit(
                now, "pod_restart", service=dep.name, pod=pod.pod_id, reason="rollout"
            )
            if self.cluster is not None:
                old = pod.node
                self.cluster.unbind(dep, pod)
                if not self.cluster.place(dep, pod):
                    self.cluster.bind(dep, pod, old)
            pod.ready_at = now
            pod.restarts = 0
            if faults is not None:
                faults.pod_born(index, pod)
            if pod.crash_looping:
                self.crash(index, pod, reason="Error")
        self._sync(dep)

    def drop_inflight_of(self, index: int) -> None:
        self._drop_inflight(index)

    def set_leak_since(self, index: int, since: float) -> None:
        self.leak_since[index] = since
        self._sync(self.deployments[index])

    # -- standby deployments and lost features ---------------------------------------------
    def plan_standby(self, index: int, replicas: int, after_s: float, reason: str) -> None:
        """Size the standby for a failover: grow to `replicas` now (a warm standby takes the
        traffic as it shifts), shrink to it only once the shift is over (`after_s`)."""
        self._standby_plan[index] += 1
        plan = self._standby_plan[index]
        if replicas >= self.standby[index] or after_s <= 0.0:
            self._set_standby(index, replicas, reason)
            return

        def shrink(_event: object) -> None:
            if self._standby_plan[index] == plan:
                self._set_standby(index, replicas, reason)

        self.sim.env.timeout(after_s).callbacks.append(shrink)

    def _set_standby(self, index: int, replicas: int, reason: str) -> None:
        before = self.standby[index]
        if replicas == before:
            return
        now = self.sim.env.now
        self._standby_seconds[index] += before * (now - self._standby_since[index])
        self._standby_since[index] = now
        self.standby[index] = replicas
        S, base = self.sim.S, self.sim.topo.base_services
        S[f.A_SB_REPLICAS, index] = replicas
        S[f.A_SB_WORKERS, index] = base[f.P_WORKERS, index]
        self.sim.events.emit(
            now,
            "standby",
            service=self.deployments[index].name,
            replicas_from=before,
            replicas_to=replicas,
            reason=reason,
        )

    def standby_replica_seconds(self, until: float) -> float:
        """Standby replicas integrated up to `until`: what failovers cost in pods."""
        total = 0.0
        for i, replicas in enumerate(self.standby):
            total += self._standby_seconds[i]
            total += replicas * max(until - self._standby_since[i], 0.0)
        return total

    def lose_feature(self, index: int, reason: str) -> None:
        """A rollback replaced a good deploy: its feature is gone for the rest of the run."""
        now = self.sim.env.now
        name = self.deployments[index].name
        self.features_lost.append((now, name))
        self.sim.events.emit(now, "feature_lost", service=name, reason=reason)

    def feature_loss_hours(self, until: float) -> float:
        """Hours the run went without the features rollbacks removed (a lasting cost)."""
        return sum(max(until - t, 0.0) for t, _ in self.features_lost) / 3600.0

    # -- kernel view -------------------------------------------------------------------------
    def _drop_inflight(self, index: int) -> None:
        """A killed ready pod takes its share of the service's queue and in-flight work."""
        S = self.sim.S
        ready = self.ready(index)
        if ready <= 0:
            return
        share = 1.0 / ready
        lost = (S[f.X_QUEUE, index] + S[f.X_WAITING, index] + S[f.X_NSERV, index]) * share
        S[f.X_QUEUE, index] *= 1.0 - share
        S[f.X_WAITING, index] *= 1.0 - share
        S[f.X_NSERV, index] *= 1.0 - share
        S[f.X_LOST, index] += lost

    def _sync(self, dep: Deployment) -> None:
        S = self.sim.S
        ready = [p for p in dep.pods if p.phase == "ready"]
        S[f.P_READY, dep.index] = len(ready)
        S[f.X_DESIRED, dep.index] = dep.spec_replicas
        oldest = min((p.ready_at for p in ready), default=self.sim.env.now)
        S[f.F_LEAK_ORIGIN, dep.index] = max(self.leak_since[dep.index], oldest)
        if self.cluster is not None:
            self.cluster.changed()
        faults = getattr(self.sim, "faults", None)
        if faults is not None:
            faults.pods_changed(dep.index)
