"""The tiered detection pipeline: tier 1 on every frame, tier 2 only where tier 1 escalates.

Per frame: every signal is scored by the three tier-1 detectors; a signal's tier-1 score
needs two of them to agree (the middle of the three, or the smaller of two before the
seasonal baseline has a day of history), which keeps one detector's quirk from paging. A
service whose worst signal stays above `escalate_z` for `persist` frames is escalated: its
signals' robust z-scores (scale-free, so one model serves every service and topology) go to
the tier-2 model, which confirms or dismisses. Confirmed services raise one alert per
episode (and again every `realert_s` while it lasts). All detectors keep learning, so a
lasting change of workload becomes the new normal within the rolling window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.anomaly.features import SIGNAL_NAMES, K, SignalLayout, layout_for
from detectors.anomaly.tier1 import Ewma, RobustZ, Seasonal
from detectors.base import Alert
from detectors.ingest.kinds import KINDS

# smallest spread judged against, per signal (log-space signals: ~5%; ratios: absolute)
FLOORS = {
    "latency_p99_ms": 0.10,
    "latency_mean_ms": 0.08,
    "error_ratio": 0.01,
    "arrival_rate": 0.10,
    "cpu_utilization": 0.05,
    "memory_mb": 0.05,
    "queue": 0.5,
}
TWO_SIDED = {"arrival_rate"}  # a drop in traffic is as telling as a surge
Z_CLIP = 12.0


@dataclass
class PipelineStats:
    frames: int = 0
    service_frames: int = 0
    tier2_calls: int = 0
    escalations: int = 0
    alerts: int = 0
    tier2_seconds: float = 0.0

    def compute_saved(self) -> float:
        """Tier-2 evaluations avoided, as a factor against running it on every service-frame."""
        return self.service_frames / max(self.tier2_calls, 1)


@dataclass
class _ServiceState:
    streak: int = 0
    confirmed: int = 0
    in_episode: bool = False
    last_alert: float = -1e18


@dataclass
class TieredPipeline:
    """Streaming anomaly detection over a topology's telemetry frames."""

    services: Sequence[str]
    tier2: object | None = None  # a fitted Multivariate over K robust z-scores; None: tier 1 only
    escalate_z: float = 3.5
    confirm_score: float = 1.0
    persist: int = 3
    realert_s: float = 900.0
    tier2_always: bool = False
    window: int = 1800
    detector_name: str = "pipeline"
    layout: SignalLayout | None = None  # None: the twin's seven signals per service
    stats: PipelineStats = field(default_factory=PipelineStats)

    def __post_init__(self) -> None:
        generic = self.layout
        if generic is None:
            self.layout = layout_for(self.services)
            n = self.layout.size
            floor = np.tile([FLOORS[name] for name in SIGNAL_NAMES], len(self.services))
            self.two_sided = np.tile(
                [name in TWO_SIDED for name in SIGNAL_NAMES], len(self.services)
            )
            self.sign = np.ones(n)
            self._members = None
        else:
            self.services = generic.services
            n = generic.size
            floor = generic.floors
            self.two_sided = generic.two_sided
            self.sign = generic.sign
            self._members = [np.flatnonzero(generic.group == i) for i in range(len(self.services))]
            self._kind_index = np.array([KINDS.index(k) for k in generic.kinds])
        self.robust = RobustZ(n, window=self.window, floor=floor)
        self.ewma = Ewma(n, half_life=self.window / 3.0, floor=floor)
        self.seasonal = Seasonal(n, floor=floor)
        self.state = [_ServiceState() for _ in self.services]
        self.last_scores = np.zeros(len(self.services))
        self.last_signal_scores = np.zeros(n)

    def get_params(self) -> dict:
        return {
            "escalate_z": self.escalate_z,
            "confirm_score": self.confirm_score,
            "persist": self.persist,
            "realert_s": self.realert_s,
            "window": self.window,
            "tier2": type(self.tier2).__name__ if self.tier2 is not None else None,
        }

    # -- tier 1 ---------------------------------------------------------------------------
    def tier1_scores(self, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(per-signal agreed score, per-signal robust z) for one frame, before learning it."""
        zr = self.robust.score_one(x)
        ze = self.ewma.score_one(x)
        zs = self.seasonal.score_one(x, t, noise=self.robust.spread)
        sr, se = self._directed(zr), self._directed(ze)
        if zs is None:
            agreed = np.minimum(sr, se)
        else:
            ss = self._directed(zs)
            agreed = np.maximum(np.minimum(sr, se), np.minimum(np.maximum(sr, se), ss))
        return agreed, zr

    def _directed(self, z: np.ndarray) -> np.ndarray:
        if self._members is not None:  # any signal set: some signals are bad going down
            z = self.sign * z
        return np.where(self.two_sided, np.abs(z), np.maximum(z, 0.0))

    def kind_vector(self, z: np.ndarray, members: np.ndarray) -> np.ndarray:
        """One service's z-scores pooled per signal kind: the strongest of each (0 if none)."""
        out = np.zeros(len(KINDS))
        for j in members:
            k = self._kind_index[j]
            if abs(z[j]) > abs(out[k]):
                out[k] = z[j]
        return out

    def learn(self, x: np.ndarray, t: float) -> None:
        self.robust.learn_one(x)
        self.ewma.learn_one(x)
        self.seasonal.learn_one(x, t)

    # -- one frame ------------------------------------------------------------------------
    def process(self, t: float, values: np.ndarray) -> list[Alert]:
        """Score one frame, learn it, and return the alerts it raises. `values` is the twin's
        services × metrics matrix, or with a `layout` one raw value per signal."""
        x = self.layout.transform(values)
        stats = self.stats
        stats.frames += 1
        n_svc = len(self.services)
        stats.service_frames += n_svc
        alerts: list[Alert] = []
        if self.robust.ready and self.ewma.ready:
            agreed, zr = self.tier1_scores(x, t)
            self.last_signal_scores = agreed
            zr_clipped = np.clip(zr, -Z_CLIP, Z_CLIP)
            if self._members is None:
                per_service = agreed.reshape(n_svc, K)
                worst = per_service.max(axis=1)
                self.last_scores = worst
                zr_clipped = zr_clipped.reshape(n_svc, K)
                for i in range(n_svc):
                    alerts.extend(self._service_step(i, t, worst[i], per_service[i], zr_clipped[i]))
            else:
                for i, members in enumerate(self._members):
                    signals = agreed[members]
                    worst = float(signals.max()) if members.size else 0.0
                    self.last_scores[i] = worst
                    z = self.kind_vector(zr_clipped, members)
                    alerts.extend(self._service_step(i, t, worst, signals, z, members))
        self.learn(x, t)
        return alerts

    def _service_step(
        self,
        i: int,
        t: float,
        worst: float,
        signals: np.ndarray,
        z: np.ndarray,
        members: np.ndarray | None = None,
    ) -> list[Alert]:
        st = self.state[i]
        st.streak = st.streak + 1 if worst >= self.escalate_z else 0
        if st.streak == self.persist:
            self.stats.escalations += 1
        score = worst / self.escalate_z
        if self.tier2 is not None and (self.tier2_always or st.streak >= self.persist):
            self.stats.tier2_calls += 1
            score = float(self.tier2.score_one(z))
            anomalous = score >= self.confirm_score and (self.tier2_always or st.streak > 0)
        else:
            anomalous = st.streak >= self.persist and score >= self.confirm_score
        st.confirmed = st.confirmed + 1 if anomalous else 0
        needed = self.persist if (self.tier2_always and self.tier2 is not None) else 1
        if st.confirmed < needed:
            if st.confirmed == 0 and st.streak == 0:
                st.in_episode = False
            return []
        if st.in_episode and t - st.last_alert < self.realert_s:
            return []
        st.in_episode = True
        st.last_alert = t
        severity = "critical" if score >= 2.0 * self.confirm_score else "warning"
        # one alert per anomalous signal, as per-signal alerting rules would page: the
        # correlator, not the detector, is what folds them into one incident
        hot = np.flatnonzero(signals >= self.escalate_z)
        if len(hot) == 0:
            hot = [int(np.argmax(signals))]
        names = SIGNAL_NAMES if members is None else [self.layout.names[m] for m in members]
        alerts = [
            Alert(
                time=t,
                service=self.services[i],
                signal=names[j],
                score=round(float(signals[j]), 4),
                severity=severity,
                detector=self.detector_name,
            )
            for j in hot
        ]
        self.stats.alerts += len(alerts)
        return alerts
