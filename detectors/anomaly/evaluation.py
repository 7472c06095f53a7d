"""Honest scoring of alerts and incidents against a run's ground truth (labels.json).

This is the only module of the detection stack that reads labels, and only to score.
Everything works on plain records: `Alert`s, anything with an ``alerts`` list and an ``id``
(an `Episode`, a correlation `Incident`), and `FaultLabel`s.

Definitions (t is an alert's time, S(f) a fault's services, g the grace):

- **Fault services** S(f): its target, its ``peer`` (partitions, packet loss) and every
  service in ``affected``.
- **Detection window** of f: [start, end + g]. An alert *qualifies* for f when its service
  is in S(f) and t lies in the detection window.
- **Fault interval** of f: [start, max(end, every affected ``until``) + g], the fault and its
  aftermath. An alert is *attributed* to f when its service is in S(f) and t lies in the
  fault interval; of several such faults the one that started last wins (ties: label order).
  An alert attributed to no fault is *noise*.
- **Event-wise precision/recall/F1, no point adjustment**: each fault is one event, detected
  when at least one scored item (alert episode or incident) holds a qualifying alert; a
  fault counts once however many alerts it drew, and a long fault found by one alert counts
  exactly as one detection, never as a stretch of detected points. A scored item is *true*
  when it holds at least one attributed alert, otherwise it is a false positive.
  precision = true items / items, recall = detected faults / faults, F1 their harmonic
  mean. By convention precision is 1 with no items, recall is 1 with no faults, F1 is 0
  when both are 0.
- **MTTD**: per detected fault, (time of its first qualifying alert) - start; the mean is
  over detected faults only (missed ones show in recall).
- **False alerts per service-day**: false alert episodes / (services x days), with
  days = observed seconds / 86,400. An episode is one page: consecutive alerts with the
  same key (service, signal, detector) no more than ``gap_s`` apart.
- **Alert compression**: 1 - incidents / alerts (also against episodes, since a detector
  that re-emits an alert every tick makes the raw figure flattering).
- **Grouping purity**: each alert's class is its attributed fault or "noise"; purity =
  sum over incidents of the majority class's alert count / all alerts in incidents.
- **Surfaced share**: a fault *surfaces* when it is the majority class (ties count) of at
  least one incident. The share is over faults with at least one attributed alert: a fault
  that drew no alert is a detection miss, not a correlation one.
- **Delay correlation adds**, per surfaced fault: (its first attributed alert inside an
  incident it is the majority of) - (its first attributed alert anywhere). Positive when
  the fault's first alerts were swallowed by another incident.

Default grace 60 s: a detector that smooths over a minute may confirm a short fault just
after it ends; longer would start crediting recovery transients.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from detectors.base import Alert
from twin.errors import FirebreakError

DEFAULT_GRACE_S = 60.0
DEFAULT_GAP_S = 300.0
EPISODE_KEY = ("service", "signal", "detector")
NOISE = "noise"
DAY_S = 86_400.0


class LabelsError(FirebreakError):
    """labels.json is missing or malformed; the message names the file, field and value."""


class EvaluationError(FirebreakError):
    """Scoring asked for something impossible (no services, no observed time)."""


@dataclass(frozen=True, slots=True)
class Affected:
    service: str
    onset: float
    until: float


@dataclass(frozen=True, slots=True)
class FaultLabel:
    """One labelled fault: its interval and the services it caused to deviate."""

    id: str
    kind: str
    target: str
    start: float
    end: float
    peer: str | None = None
    affected: tuple[Affected, ...] = ()

    @property
    def services(self) -> frozenset[str]:
        names = {self.target, *(a.service for a in self.affected)}
        if self.peer:
            names.add(self.peer)
        return frozenset(names)

    def detection_end(self, grace_s: float) -> float:
        return self.end + grace_s

    def interval_end(self, grace_s: float) -> float:
        return max([self.end, *(a.until for a in self.affected)]) + grace_s

    def qualifies(self, alert: Alert, grace_s: float) -> bool:
        return alert.service in self.services and self.start <= alert.time <= self.end + grace_s

    def covers(self, alert: Alert, grace_s: float) -> bool:
        return alert.service in self.services and self.start <= alert.time <= self.interval_end(
            grace_s
        )


# ----------------------------------------------------------------------------- labels


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LabelsError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise LabelsError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _affected(raw: Any, where: str) -> tuple[Affected, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise LabelsError(f"{where}: expected a list, got {type(raw).__name__}")
    out = []
    for j, item in enumerate(raw):
        at = f"{where}[{j}]"
        if not isinstance(item, Mapping):
            raise LabelsError(f"{at}: expected a mapping, got {type(item).__name__}")
        for key in ("service", "onset", "until"):
            if key not in item:
                raise LabelsError(f"{at}.{key}: missing")
        onset, until = _num(item["onset"], f"{at}.onset"), _num(item["until"], f"{at}.until")
        if until < onset:
            raise LabelsError(f"{at}.until: {until:g} is before onset {onset:g}")
        out.append(Affected(_str(item["service"], f"{at}.service"), onset, until))
    return tuple(out)


def _fault(raw: Any, where: str) -> FaultLabel:
    if not isinstance(raw, Mapping):
        raise LabelsError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in ("id", "kind", "target", "start", "end"):
        if key not in raw:
            raise LabelsError(f"{where}.{key}: missing")
    start, end = _num(raw["start"], f"{where}.start"), _num(raw["end"], f"{where}.end")
    if end < start:
        raise LabelsError(f"{where}.end: {end:g} is before start {start:g}")
    params = raw.get("params") or {}
    peer = params.get("peer") if isinstance(params, Mapping) else None
    return FaultLabel(
        id=_str(raw["id"], f"{where}.id"),
        kind=_str(raw["kind"], f"{where}.kind"),
        target=_str(raw["target"], f"{where}.target"),
        start=start,
        end=end,
        peer=peer if isinstance(peer, str) and peer else None,
        affected=_affected(raw.get("affected"), f"{where}.affected"),
    )


def parse_labels(data: Any, source: str = "labels.json") -> list[FaultLabel]:
    """Validate parsed labels.json content into fault records (errors name field and value)."""
    if not isinstance(data, Mapping):
        raise LabelsError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    if "faults" not in data:
        raise LabelsError(f"{source}: faults: missing")
    faults = data["faults"]
    if not isinstance(faults, list):
        raise LabelsError(f"{source}: faults: expected a list, got {type(faults).__name__}")
    out = [_fault(raw, f"{source}: faults[{i}]") for i, raw in enumerate(faults)]
    seen: set[str] = set()
    for i, fault in enumerate(out):
        if fault.id in seen:
            raise LabelsError(f"{source}: faults[{i}].id: duplicate id {fault.id!r}")
        seen.add(fault.id)
    return out


def load_labels(source: str | Path | Mapping) -> list[FaultLabel]:
    """Faults from a run directory, a labels.json path, or already parsed content."""
    if isinstance(source, Mapping):
        return parse_labels(source)
    path = Path(source)
    if path.is_dir():
        path = path / "labels.json"
    try:
        text = path.read_text()
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read labels ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return parse_labels(data, str(path))


# ----------------------------------------------------------------------------- episodes


class AlertGroup(Protocol):
    """What scoring needs from an episode or an incident."""

    id: str
    alerts: Sequence[Alert]


@dataclass(frozen=True)
class Episode:
    """Consecutive alerts of one key, as one page to a human."""

    id: str
    start: float
    end: float
    alerts: tuple[Alert, ...]


def alert_episodes(
    alerts: Iterable[Alert], gap_s: float = DEFAULT_GAP_S, key: Sequence[str] = EPISODE_KEY
) -> list[Episode]:
    """Split alerts into episodes: same key, each alert within ``gap_s`` of the previous."""
    if not gap_s >= 0:
        raise EvaluationError(f"gap_s: expected a number >= 0, got {gap_s!r}")
    runs: dict[tuple, list[list[Alert]]] = {}
    for alert in sorted(alerts, key=lambda a: a.time):
        k = tuple(getattr(alert, name) for name in key)
        chains = runs.setdefault(k, [])
        if chains and alert.time - chains[-1][-1].time <= gap_s:
            chains[-1].append(alert)
        else:
            chains.append([alert])
    episodes = [
        Episode(
            f"{'/'.join(map(str, k))}@{chain[0].time:g}",
            chain[0].time,
            chain[-1].time,
            tuple(chain),
        )
        for k, chains in runs.items()
        for chain in chains
    ]
    episodes.sort(key=lambda e: (e.start, e.id))
    return episodes


def attribute(alert: Alert, faults: Sequence[FaultLabel], grace_s: float = DEFAULT_GRACE_S) -> str:
    """The fault id an alert belongs to (latest-starting covering fault), or ``NOISE``."""
    best: FaultLabel | None = None
    for fault in faults:
        if fault.covers(alert, grace_s) and (best is None or fault.start > best.start):
            best = fault
    return best.id if best is not None else NOISE


# ----------------------------------------------------------------------------- event-wise


@dataclass
class EventScores:
    """Event-wise counts; ratios are derived, so suites add up counts (micro-average)."""

    faults: int
    detected: int
    items: int
    true_items: int
    delays: tuple[tuple[str, float], ...] = ()  # (fault id, delay s); ids may repeat in suites

    @property
    def false_items(self) -> int:
        return self.items - self.true_items

    @property
    def precision(self) -> float:
        return self.true_items / self.items if self.items else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.faults if self.faults else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def mttd_s(self) -> float | None:
        return sum(d for _, d in self.delays) / len(self.delays) if self.delays else None

    @property
    def delays_s(self) -> dict[str, float]:
        """Per fault id (one run's view: in a suite a repeated id keeps its last delay)."""
        return dict(self.delays)

    def __add__(self, other: EventScores) -> EventScores:
        return EventScores(
            self.faults + other.faults,
            self.detected + other.detected,
            self.items + other.items,
            self.true_items + other.true_items,
            self.delays + other.delays,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "faults": self.faults,
            "detected": self.detected,
            "items": self.items,
            "true_items": self.true_items,
            "false_items": self.false_items,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "mttd_s": self.mttd_s,
            "delays_s": self.delays_s,
        }


def detection_delays(
    alerts: Iterable[Alert], faults: Sequence[FaultLabel], grace_s: float = DEFAULT_GRACE_S
) -> dict[str, float]:
    """Per detected fault id: first qualifying alert time minus the fault's start."""
    first: dict[str, float] = {}
    for alert in alerts:
        for fault in faults:
            if fault.qualifies(alert, grace_s) and alert.time < first.get(fault.id, math.inf):
                first[fault.id] = alert.time
    return {f.id: first[f.id] - f.start for f in faults if f.id in first}


def event_scores(
    items: Iterable[AlertGroup], faults: Sequence[FaultLabel], grace_s: float = DEFAULT_GRACE_S
) -> EventScores:
    """Event-wise precision/recall/F1 and MTTD of scored items (episodes or incidents)."""
    items = list(items)
    true_items = sum(
        any(f.covers(a, grace_s) for a in item.alerts for f in faults) for item in items
    )
    delays = detection_delays((a for item in items for a in item.alerts), faults, grace_s)
    return EventScores(len(faults), len(delays), len(items), true_items, tuple(delays.items()))


def false_alerts_per_service_day(
    episodes: Iterable[AlertGroup],
    faults: Sequence[FaultLabel],
    n_services: int,
    duration_s: float,
    grace_s: float = DEFAULT_GRACE_S,
) -> float:
    """False episodes (no attributed alert) / (services x observed days)."""
    if n_services <= 0:
        raise EvaluationError(f"n_services: expected a positive count, got {n_services!r}")
    if not duration_s > 0:
        raise EvaluationError(f"duration_s: expected positive seconds, got {duration_s!r}")
    false = sum(not any(f.covers(a, grace_s) for a in ep.alerts for f in faults) for ep in episodes)
    return false / (n_services * duration_s / DAY_S)


# ----------------------------------------------------------------------------- correlation


@dataclass
class CorrelationQuality:
    """How well incidents group alerts, against the ground truth."""

    alerts: int
    episodes: int
    incidents: int
    compression: float
    episode_compression: float
    purity: float
    faults_with_alerts: int
    surfaced: int
    surfaced_share: float
    added_delay_s: dict[str, float] = field(default_factory=dict)

    @property
    def mean_added_delay_s(self) -> float | None:
        d = self.added_delay_s
        return sum(d.values()) / len(d) if d else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_added_delay_s": self.mean_added_delay_s}


def _compression(n_groups: int, n_alerts: int) -> float:
    return 1.0 - n_groups / n_alerts if n_alerts else 0.0


def correlation_quality(
    alerts: Sequence[Alert],
    incidents: Sequence[AlertGroup],
    faults: Sequence[FaultLabel],
    grace_s: float = DEFAULT_GRACE_S,
    gap_s: float = DEFAULT_GAP_S,
) -> CorrelationQuality:
    """Compression, purity, surfaced share and added delay of incidents built from alerts."""
    cache: dict[Alert, str] = {}

    def label_of(alert: Alert) -> str:
        if alert not in cache:
            cache[alert] = attribute(alert, faults, grace_s)
        return cache[alert]

    first_anywhere: dict[str, float] = {}
    for alert in alerts:
        cls = label_of(alert)
        if cls != NOISE:
            first_anywhere[cls] = min(first_anywhere.get(cls, math.inf), alert.time)
    majority_total = in_incidents = 0
    surfaced_at: dict[str, float] = {}
    for incident in incidents:
        classes = [label_of(a) for a in incident.alerts]
        if not classes:
            continue
        counts = Counter(classes)
        top = max(counts.values())
        majority_total += top
        in_incidents += len(classes)
        for cls, n in counts.items():
            if n == top and cls != NOISE:
                t = min(a.time for a, c in zip(incident.alerts, classes, strict=True) if c == cls)
                surfaced_at[cls] = min(surfaced_at.get(cls, math.inf), t)
    n_faults = len(first_anywhere)
    surfaced = sum(1 for f in first_anywhere if f in surfaced_at)
    return CorrelationQuality(
        alerts=len(alerts),
        episodes=(n_ep := len(alert_episodes(alerts, gap_s))),
        incidents=len(incidents),
        compression=_compression(len(incidents), len(alerts)),
        episode_compression=_compression(len(incidents), n_ep),
        purity=majority_total / in_incidents if in_incidents else 1.0,
        faults_with_alerts=n_faults,
        surfaced=surfaced,
        surfaced_share=surfaced / n_faults if n_faults else 1.0,
        added_delay_s={
            f: surfaced_at[f] - first_anywhere[f] for f in first_anywhere if f in surfaced_at
        },
    )


# ----------------------------------------------------------------------------- report


@dataclass
class Evaluation:
    """Everything one run's alerts (and optionally incidents) score against its labels."""

    alerts: EventScores
    false_alerts_per_service_day: float
    incidents: EventScores | None = None
    correlation: CorrelationQuality | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alerts": self.alerts.to_dict(),
            "false_alerts_per_service_day": self.false_alerts_per_service_day,
            "incidents": self.incidents.to_dict() if self.incidents else None,
            "correlation": self.correlation.to_dict() if self.correlation else None,
        }


def evaluate(
    alerts: Sequence[Alert],
    faults: Sequence[FaultLabel],
    *,
    n_services: int,
    duration_s: float,
    incidents: Sequence[AlertGroup] | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    gap_s: float = DEFAULT_GAP_S,
) -> Evaluation:
    """Score alert episodes (and incidents, if given) of one run in one call."""
    episodes = alert_episodes(alerts, gap_s)
    return Evaluation(
        alerts=event_scores(episodes, faults, grace_s),
        false_alerts_per_service_day=false_alerts_per_service_day(
            episodes, faults, n_services, duration_s, grace_s
        ),
        incidents=event_scores(incidents, faults, grace_s) if incidents is not None else None,
        correlation=correlation_quality(alerts, incidents, faults, grace_s, gap_s)
        if incidents is not None
        else None,
    )
