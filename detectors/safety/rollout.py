"""Safe rollout of a new detector version: shadow, promote if not worse, roll back if it degrades.

The candidate scores the same frames as the live version, but only the live version's
alerts are sent; the candidate's are recorded by its own :class:`ModelMonitor`. Incident
feedback reaches both monitors, so the two are judged on the same ground. ``decide()``
promotes only when the candidate's false-alert rate (per service-day) is no higher than
the live one's plus ``margin`` and it detected at least as many confirmed incidents.
After a promotion the old version keeps running in shadow as the fallback; as soon as the
new version's false-alert rate since promotion exceeds the fallback's by ``margin`` (with
at least ``min_alerts`` judged alerts as evidence), it is rolled back automatically.

Every change (shadow start, promotion, rejection, rollback, fallback retired) is appended
to a JSONL audit log *before* the registry's promoted pointer moves (write-ahead: a crash
between the two leaves a logged intent, never an unlogged change). Each record is one
``write`` followed by fsync; a torn last line from a crash is cut off when the log is
reopened, and :func:`read_audit_log` skips it, so every line that remains is complete JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import Alert
from detectors.safety.monitor import DAY, IncidentLike, ModelMonitor, MonitorStats
from detectors.safety.registry import ModelRegistry, UnknownModelError
from twin.errors import FirebreakError

SHADOW, PROMOTED, REJECTED, ROLLED_BACK, SETTLED = (
    "shadow",
    "promoted",
    "rejected",
    "rolled_back",
    "settled",
)


class RolloutError(FirebreakError):
    """A rollout is misconfigured or asked to do something its state does not allow."""


class AuditLogError(FirebreakError):
    """An audit log line (other than a torn last one) is not valid JSON."""


def alerts_from_scores(
    scores: np.ndarray | float,
    threshold: float,
    signals: Sequence[tuple[str, str]],
    *,
    time: float,
    detector: str,
    critical: float = 2.0,
) -> list[Alert]:
    """Alerts for the signals whose score exceeds ``threshold`` (NaN never alerts).

    Works for banks (one score per signal) and multivariate detectors (one float, one
    ``signals`` entry). Severity is critical from ``critical × threshold`` when the
    threshold is positive.
    """
    s = np.atleast_1d(np.asarray(scores, dtype=float))
    if s.shape != (len(signals),):
        raise RolloutError(
            f"detector {detector!r} returned {s.size} score(s) for {len(signals)} signal(s)"
        )
    hot = np.flatnonzero(s > threshold)
    if hot.size == 0:
        return []
    level = threshold * critical if threshold > 0 else math.inf
    return [
        Alert(
            time=float(time),
            service=signals[i][0],
            signal=signals[i][1],
            score=float(s[i]),
            severity="critical" if s[i] >= level else "warning",
            detector=detector,
        )
        for i in hot
    ]


class AuditLog:
    """Append-only JSONL; one complete line per record, fsynced before the change it logs."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._seq = len(read_audit_log(self.path))

    def _repair(self) -> None:
        """Cut a torn last line (a crash mid-write) so appends start on a clean line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write one record (numbered) and make it durable before returning it."""
        full = {"seq": self._seq, **record}
        line = (json.dumps(full, sort_keys=True, allow_nan=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._seq += 1
        return full


def read_audit_log(path: Path | str) -> list[dict[str, Any]]:
    """Every complete record in order; a torn final line (crash mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]  # the tail after the last newline is torn
    records = []
    for i, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise AuditLogError(f"{path}:{i}: damaged audit record: {exc}") from exc
    return records


@dataclass(frozen=True)
class Decision:
    """What ``decide()`` or the rollback check concluded, with the figures behind it."""

    action: str  # "wait", "promote", "reject" or "rollback"
    reason: str
    new: MonitorStats  # the candidate (decide) or the promoted version (rollback)
    old: MonitorStats  # the live version (decide) or the fallback (rollback)


class _Arm:
    """One running version: its detector, its alert threshold and its monitor."""

    def __init__(
        self, version: int, detector: Any, threshold: float, monitor: ModelMonitor
    ) -> None:
        self.version = version
        self.detector = detector
        self.threshold = threshold
        self.monitor = monitor
        self.label = monitor.detector

    def step(
        self, time: float, x: np.ndarray, signals: Sequence[tuple[str, str]], learn: bool
    ) -> list[Alert]:
        """Score before learning (prequential), so a frame never judges itself."""
        scores = self.detector.score_one(x)
        alerts = alerts_from_scores(scores, self.threshold, signals, time=time, detector=self.label)
        self.monitor.observe(time)
        self.monitor.record(alerts)
        if learn:
            self.detector.learn_one(x)
        return alerts


class Rollout:
    """Runs ``candidate`` in shadow of ``live`` and promotes, rejects or rolls it back."""

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        live: int | None,
        candidate: int,
        *,
        signals: Sequence[tuple[str, str]],
        log_path: Path | str,
        threshold: float | Mapping[int, float] | None = None,
        margin: float = 0.5,
        min_alerts: int = 20,
        window: float = DAY,
        resolve_after: float | None = 3600.0,
        learn: bool = True,
        start_time: float = 0.0,
    ) -> None:
        if not margin >= 0:
            raise RolloutError(f"margin must be ≥ 0 false alerts per service-day, not {margin}")
        if min_alerts < 0:
            raise RolloutError(f"min_alerts must be ≥ 0, not {min_alerts}")
        if not signals:
            raise RolloutError("signals must name at least one (service, signal)")
        promoted = registry.promoted(name)
        if promoted is None:
            raise RolloutError(
                f"model {name!r} has no promoted version; promote the first one "
                "(registry.promote) before rolling out another"
            )
        live = promoted.version if live is None else live
        if live != promoted.version:
            raise RolloutError(
                f"model {name!r}: live version {live} is not the promoted one ({promoted.version})"
            )
        if candidate == live:
            raise RolloutError(f"model {name!r}: candidate and live are both version {live}")
        try:
            registry.info(name, candidate)
        except UnknownModelError as exc:
            raise RolloutError(f"candidate: {exc}") from exc

        self.registry = registry
        self.name = name
        self.signals = [tuple(s) for s in signals]
        self.margin = float(margin)
        self.min_alerts = int(min_alerts)
        self.learn = learn
        self._window = window
        self._resolve_after = resolve_after
        self._n_services = len({s[0] for s in self.signals})
        self._thresholds = threshold
        self.log = AuditLog(log_path)
        self.now = float(start_time)
        self.live = self._arm(live)
        self.shadow: _Arm | None = self._arm(candidate)
        self.state = SHADOW
        self.promoted_at: float | None = None
        self.last_rollback: Decision | None = None
        self._log("shadow_start", f"version {candidate} shadows live version {live}")

    # ---- setup -------------------------------------------------------------------------
    def _threshold(self, version: int) -> float:
        t = self._thresholds
        if isinstance(t, Mapping):
            if version not in t:
                raise RolloutError(f"model {self.name!r}: no threshold given for version {version}")
            return float(t[version])
        if t is not None:
            return float(t)
        metrics = self.registry.info(self.name, version).metrics
        if "threshold" not in metrics:
            raise RolloutError(
                f"model {self.name!r} version {version}: no threshold= given and none saved "
                "in its metrics ('threshold')"
            )
        return float(metrics["threshold"])

    def _arm(self, version: int) -> _Arm:
        monitor = ModelMonitor(
            f"{self.name}@v{version}",
            n_services=self._n_services,
            window=self._window,
            resolve_after=self._resolve_after,
        )
        monitor.observe(self.now)
        detector = self.registry.load(self.name, version)
        for method in ("learn_one", "score_one"):
            if not callable(getattr(detector, method, None)):
                raise RolloutError(f"model {self.name!r} version {version} has no {method}()")
        return _Arm(version, detector, self._threshold(version), monitor)

    # ---- stream ------------------------------------------------------------------------
    def step(self, time: float, x: np.ndarray) -> list[Alert]:
        """Score one frame with both versions; return the live alerts (the only ones sent)."""
        if time < self.now:
            raise RolloutError(f"frame time {time} is before the previous one ({self.now})")
        self.now = float(time)
        sent = self.live.step(time, x, self.signals, self.learn)
        if self.shadow is not None:
            self.shadow.step(time, x, self.signals, self.learn)
        self._check_rollback()
        return sent

    def confirm(self, target: Any) -> int:
        """Feedback: incidents reach both versions; alert ids or records only the live one."""
        return self._feedback(target, confirmed=True)

    def reject(self, target: Any) -> int:
        """Feedback that alerts were false, addressed as in :meth:`confirm`."""
        return self._feedback(target, confirmed=False)

    def _feedback(self, target: Any, *, confirmed: bool) -> int:
        arms = [self.live]
        if isinstance(target, IncidentLike) and self.shadow is not None:
            arms.append(self.shadow)
        n = 0
        for arm in arms:
            n += arm.monitor.confirm(target) if confirmed else arm.monitor.reject(target)
        self._check_rollback()
        return n

    # ---- decisions ---------------------------------------------------------------------
    def _compare(
        self, new: _Arm, old: _Arm, since: float | None, *, recall: bool
    ) -> tuple[str, MonitorStats, MonitorStats]:
        """'wait' without enough judged alerts, else 'worse' or 'ok' for ``new`` against ``old``.

        Worse: more false alerts per service-day than ``old`` plus the margin, or (when
        ``recall``) fewer confirmed incidents detected from the same feedback.
        """
        a, b = new.monitor.stats(since=since), old.monitor.stats(since=since)
        if a.resolved + b.resolved < max(self.min_alerts, 1):
            return "wait", a, b
        if _zero_if_nan(a.false_rate) > _zero_if_nan(b.false_rate) + self.margin:
            return "worse", a, b
        if recall and a.detected_incidents < b.detected_incidents:
            return "worse", a, b
        return "ok", a, b

    def decide(self) -> Decision:
        """Promote the shadow candidate if it is not worse, reject it if it is, else wait."""
        if self.state != SHADOW or self.shadow is None:
            raise RolloutError(
                f"model {self.name!r}: decide() needs a shadow run, state is {self.state}"
            )
        old, new = self.live, self.shadow
        verdict, cand, live = self._compare(new, old, None, recall=True)
        if verdict == "wait":
            judged = cand.resolved + live.resolved
            return Decision("wait", f"{judged} judged alerts, need {self.min_alerts}", cand, live)
        reason = self._reason(cand, live)
        if verdict == "worse":
            self._log("reject", f"version {new.version} is worse: {reason}", live, cand)
            self.shadow, self.state = None, REJECTED
            return Decision("reject", reason, cand, live)
        self._log(
            "promote", f"version {new.version} is not worse: {reason}", live, cand, new.version
        )
        self.registry.promote(self.name, new.version, reason=f"rollout: {reason}")
        self.live, self.shadow = new, old  # the old version keeps running as the fallback
        self.state, self.promoted_at = PROMOTED, self.now
        return Decision("promote", reason, cand, live)

    def _check_rollback(self) -> Decision | None:
        """After a promotion: back to the fallback once the new version alerts falsely more."""
        if self.state != PROMOTED or self.shadow is None:
            return None
        new, old = self.live, self.shadow
        verdict, a, b = self._compare(new, old, self.promoted_at, recall=False)
        if verdict != "worse":
            return None
        reason = self._reason(a, b)
        text = f"version {new.version} degraded, back to {old.version}: {reason}"
        self._log("rollback", text, a, b, old.version)
        self.registry.promote(self.name, old.version, reason=f"rollback: {reason}")
        self.live, self.shadow, self.state = old, None, ROLLED_BACK
        self.last_rollback = Decision("rollback", reason, a, b)
        return self.last_rollback

    def retire_fallback(self) -> None:
        """Stop running the fallback once the promoted version has proven itself."""
        if self.state != PROMOTED or self.shadow is None:
            raise RolloutError(f"model {self.name!r}: no fallback to retire (state {self.state})")
        self._log("fallback_retired", f"version {self.shadow.version} stops running")
        self.shadow, self.state = None, SETTLED

    # ---- log ---------------------------------------------------------------------------
    def _reason(self, new: MonitorStats, old: MonitorStats) -> str:
        return (
            f"false alerts/service-day {_fmt(new.false_rate)} vs {_fmt(old.false_rate)} "
            f"(margin {self.margin:g}), incidents detected {new.detected_incidents} "
            f"vs {old.detected_incidents}"
        )

    def _log(
        self,
        event: str,
        reason: str,
        live: MonitorStats | None = None,
        shadow: MonitorStats | None = None,
        promoted: int | None = None,
    ) -> None:
        """One record; ``live``/``shadow`` are the roles before this change."""
        record: dict[str, Any] = {
            "event": event,
            "model": self.name,
            "time": self.now,
            "live": self.live.version,
            "shadow": self.shadow.version if self.shadow else None,
            "promoted": promoted,
            "reason": reason,
        }
        if live is not None and shadow is not None:
            record["stats"] = {"live": live.to_dict(), "shadow": shadow.to_dict()}
        self.log.append(record)


def _zero_if_nan(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3g}"
