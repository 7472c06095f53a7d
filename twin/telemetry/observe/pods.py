"""Pods as Kubernetes names them and as Prometheus sees them: one series per pod, named
`<deployment>-<ReplicaSet hash>-<suffix>`; a rollout makes a new ReplicaSet (new hash, new
pods), a container restart resets the pod's counters under the same name, a scale-down
removes pods and a scale-up adds new ones.

The twin simulates a service's replicas as one pool; here each replica is a pod slot that
takes a share of the load (pods differ: `pod_spread`), is active while the slot is below
the ready replicas, and gets a fresh name each time it comes back (twin.telemetry.observe.
scrape decides, round by round).
"""

from __future__ import annotations

import hashlib

import numpy as np

from twin.scenario.schema import Scenario

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes draws generated names from
MAX_SLOTS = 16  # pods tracked per service; more replicas share the slots' series


def _token(seed: int, parts: tuple, length: int) -> str:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=16).digest()
    return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:length])


class PodSet:
    """Every pod slot of every service: its service, phase, load factor and current name."""

    def __init__(self, scenario: Scenario, names: tuple[str, ...], rng: np.random.Generator):
        self.seed = scenario.seed
        settings = scenario.telemetry.production
        slots = []
        for s, name in enumerate(names):
            svc = scenario.topology.services[name]
            most = max(svc.replicas, svc.hpa.max_replicas if svc.hpa else 0, 1)
            slots += [(s, k) for k in range(min(most, MAX_SLOTS))]
        self.service = np.array([s for s, _ in slots], dtype=np.int64)
        self.first = np.searchsorted(self.service, np.arange(len(names)))  # each one's first pod
        self.slot = np.array([k for _, k in slots], dtype=np.int64)
        self.names = names
        n = len(slots)
        self.phase = rng.uniform(0.0, settings.scrape_interval_s, n)
        self.factor = np.exp(settings.pod_spread * rng.standard_normal(n))
        self.memory_factor = np.exp(0.03 * rng.standard_normal(n))
        self.generation = np.zeros(len(names), dtype=np.int64)  # ReplicaSet per service
        self.incarnation = np.zeros(n, dtype=np.int64)
        self.active = np.zeros(n, dtype=bool)
        self.restarted = np.zeros(n, dtype=bool)  # counters reset at the next scrape

    def __len__(self) -> int:
        return len(self.service)

    def pod_name(self, p: int, generation: int, incarnation: int) -> str:
        """`<service>-<ReplicaSet hash>-<suffix>`, stable for a (generation, incarnation)."""
        name = self.names[int(self.service[p])]
        rs = _token(self.seed, ("rs", name, generation), 10)
        return f"{name}-{rs}-{_token(self.seed, ('pod', p, generation, incarnation), 5)}"

    def pick(self, key: object, n: int) -> int:
        """Which of n pods a restart event hit (the twin names its own pods, not these)."""
        digest = hashlib.blake2b(repr((self.seed, key)).encode(), digest_size=4).digest()
        return int.from_bytes(digest, "little") % n
