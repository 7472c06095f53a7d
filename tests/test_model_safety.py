"""Model safety: versioned registry, online monitor, shadow rollout with automatic rollback.

The detectors here are small stubs (an EWMA z-score per signal) so these tests do not
depend on the real detectors; the stream is seeded noise with injected incidents whose
ground truth is fed back as incident feedback.

Over 500 lines because the registry, the monitor and the rollout are tested on one seeded
stream with the same stub detectors.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.base import Alert
from detectors.safety.monitor import IncidentRef, ModelMonitor, MonitorError
from detectors.safety.registry import (
    CorruptModelError,
    ModelRegistry,
    RegistryError,
    UnknownModelError,
)
from detectors.safety.rollout import (
    AuditLog,
    AuditLogError,
    Rollout,
    RolloutError,
    alerts_from_scores,
    read_audit_log,
)
from detectors.safety.state import register_storable
from twin.errors import FirebreakError

SERVICES = ["cart", "checkout", "frontend", "payment"]
SIGNALS = [(s, "p99") for s in SERVICES]
STEP = 60.0
DAY_STEPS = 1440


@register_storable
class ZStub:
    """Per-signal EWMA z-score; optionally frozen after ``freeze_after`` learned frames."""

    def __init__(self, gain: float = 1.0, alpha: float = 0.01, freeze_after: int | None = None):
        self.gain = gain
        self.alpha = alpha
        self.freeze_after = freeze_after
        self._n = 0
        self._mean: np.ndarray | None = None
        self._var: np.ndarray | None = None

    def get_params(self) -> dict:
        return {"gain": self.gain, "alpha": self.alpha, "freeze_after": self.freeze_after}

    def learn_one(self, x: np.ndarray) -> None:
        if self.freeze_after is not None and self._n >= self.freeze_after:
            return
        if self._mean is None or self._var is None:
            self._mean, self._var = x.astype(float).copy(), np.ones_like(x, dtype=float)
        else:
            d = x - self._mean
            self._mean = self._mean + self.alpha * d
            self._var = (1 - self.alpha) * (self._var + self.alpha * d * d)
        self._n += 1

    def score_one(self, x: np.ndarray) -> np.ndarray:
        if self._mean is None or self._var is None:
            return np.zeros_like(x, dtype=float)
        return self.gain * np.abs(x - self._mean) / np.sqrt(self._var)


class Clock:
    """A fake clock: each call advances one second from a fixed epoch."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def warmed(rng: np.random.Generator, n: int = 500, **params) -> ZStub:
    det = ZStub(**params)
    for _ in range(n):
        det.learn_one(rng.normal(size=len(SERVICES)))
    return det


def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", clock=Clock())


class Stream:
    """Seeded noise on four services; an incident every 4 h on one service; optional shift."""

    def __init__(self, seed: int, shift_at: float | None = None, shift: float = 5.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.shift_at, self.shift = shift_at, shift

    def frames(self, start: float, steps: int):
        for k in range(steps):
            t = start + k * STEP
            x = self.rng.normal(size=len(SERVICES))
            if self.shift_at is not None and t >= self.shift_at:
                x = x + self.shift  # a lasting change of workload, not an incident
            slot, pos = divmod(int(t // STEP), 240)
            incident = None
            if 100 <= pos < 110:
                svc = slot % len(SERVICES)
                x[svc] += 10.0
                if pos == 109:
                    t0 = t - 9 * STEP
                    incident = IncidentRef(t0, t, frozenset({SERVICES[svc]}), f"inc{slot}")
            yield t, x, incident


def drive(rollout: Rollout, stream: Stream, start: float, steps: int) -> float:
    """Feed frames and confirm each incident when it ends; returns the next frame time."""
    t = start
    for t, x, incident in stream.frames(start, steps):
        rollout.step(t, x)
        if incident is not None:
            rollout.confirm(incident)
    return t + STEP


def setup_rollout(
    tmp_path: Path, candidate_params: dict, **kwargs
) -> tuple[ModelRegistry, Rollout]:
    reg = registry(tmp_path)
    rng = np.random.default_rng(7)
    reg.save("zs", warmed(rng, gain=1.0))
    reg.save("zs", warmed(rng, **candidate_params), parent=1)
    reg.promote("zs", 1)
    opts = {"margin": 1.0, "min_alerts": 10, "resolve_after": 600.0}
    opts.update(kwargs)
    ro = Rollout(
        reg, "zs", 1, 2, signals=SIGNALS, threshold=3.0, log_path=tmp_path / "audit.jsonl", **opts
    )
    return reg, ro


def events(path: Path) -> list[str]:
    return [r["event"] for r in read_audit_log(path)]


# ---- registry ------------------------------------------------------------------------


def test_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    rng = np.random.default_rng(1)
    det = warmed(rng, gain=1.3, alpha=0.02)
    mv = reg.save("zs", det, metrics={"f1": np.float64(0.91)})
    assert mv.version == 1 and mv.format == "arrays" and mv.state_file.name == "state.npz"
    assert mv.params == {"gain": 1.3, "alpha": 0.02, "freeze_after": None}
    assert mv.metrics == {"f1": 0.91}
    assert mv.created == 1_700_000_001.0  # the injected clock, never wall time
    assert mv.class_path.endswith(":ZStub") and len(mv.sha256) == 64
    loaded = reg.load("zs", 1)
    assert type(loaded) is ZStub and loaded is not det
    for x in rng.normal(size=(200, len(SERVICES))):
        assert np.array_equal(det.score_one(x), loaded.score_one(x))
        det.learn_one(x)
        loaded.learn_one(x)


@register_storable
class TinyAE(torch.nn.Module):
    """A two-layer autoencoder: its constructor params rebuild it."""

    def __init__(self, n: int, hidden: int) -> None:
        super().__init__()
        self.n, self.hidden = n, hidden
        self.enc = torch.nn.Linear(n, hidden)
        self.dec = torch.nn.Linear(hidden, n)

    def get_params(self) -> dict:
        return {"n": self.n, "hidden": self.hidden}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


def test_torch_module_saved_as_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyAE(n=4, hidden=2)
    reg = registry(tmp_path)
    mv = reg.save("ae", module)
    assert mv.format == "safetensors" and mv.state_file.name == "state.safetensors"
    assert mv.params == {"n": 4, "hidden": 2}
    loaded = reg.load("ae", 1)
    x = torch.randn(16, 4)
    with torch.no_grad():
        assert torch.equal(module.eval()(x), loaded(x))


def test_versions_are_numbered_and_immutable(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    rng = np.random.default_rng(2)
    for gain in (1.0, 2.0, 3.0):
        reg.save("zs", warmed(rng, 50, gain=gain), parent=None if gain == 1.0 else int(gain - 1))
    vs = reg.versions("zs")
    assert [v.version for v in vs] == [1, 2, 3]
    assert [v.parent for v in vs] == [None, 1, 2]
    assert [v.created for v in vs] == sorted(v.created for v in vs)
    assert [v.params["gain"] for v in vs] == [1.0, 2.0, 3.0]
    before = vs[1].state_file.read_bytes()
    with pytest.raises(RegistryError, match=r"version 2 already exists.*immutable"):
        reg.save("zs", warmed(rng, 50, gain=9.0), version=2)
    assert vs[1].state_file.read_bytes() == before
    assert reg.load("zs", 2).gain == 2.0
    assert not vs[1].state_file.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert reg.save("zs", warmed(rng, 50)).version == 4  # numbering continues
    assert reg.names() == ["zs"]


def test_load_defaults_to_promoted_version(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    rng = np.random.default_rng(3)
    reg.save("zs", warmed(rng, 50, gain=1.0))
    reg.save("zs", warmed(rng, 50, gain=2.0))
    assert reg.promoted("zs") is None
    with pytest.raises(UnknownModelError, match=r"'zs' has no promoted version; pass version="):
        reg.load("zs")
    reg.promote("zs", 1, reason="first deploy")
    assert reg.promoted("zs").version == 1
    assert reg.load("zs").gain == 1.0  # promoted, not latest
    reg.promote("zs", 2)
    assert reg.load("zs").gain == 2.0


def test_registry_errors(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    rng = np.random.default_rng(4)
    with pytest.raises(UnknownModelError, match=r"unknown model 'nope' \(known models: none\)"):
        reg.load("nope", 1)
    reg.save("zs", warmed(rng, 50))
    with pytest.raises(UnknownModelError, match=r"model 'zs' has no version 7 \(saved: \[1\]\)"):
        reg.load("zs", 7)
    with pytest.raises(UnknownModelError, match="parent version 5 does not exist"):
        reg.save("zs", warmed(rng, 50), parent=5)
    with pytest.raises(RegistryError, match=r"model name '\.\./evil' is not valid"):
        reg.save("../evil", warmed(rng, 50))
    with pytest.raises(RegistryError, match=r"params\.when: object value .* is not JSON"):
        reg.save("zs", warmed(rng, 50), params={"when": object()})
    with pytest.raises(RegistryError, match="version must be a positive integer"):
        reg.save("zs", warmed(rng, 50), version=0)
    with pytest.raises(UnknownModelError):
        reg.promote("zs", 3)
    assert issubclass(CorruptModelError, FirebreakError)
    assert issubclass(UnknownModelError, RegistryError)


def test_corrupt_files_are_refused(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    rng = np.random.default_rng(5)
    v1 = reg.save("zs", warmed(rng, 50))
    v2 = reg.save("zs", warmed(rng, 50))
    data = bytearray(v1.state_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    v1.state_file.chmod(0o644)
    v1.state_file.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="'zs' version 1: content hash mismatch"):
        reg.load("zs", 1)
    meta = v2.path / "meta.json"
    edited = json.loads(meta.read_text())
    edited["params"]["gain"] = 5.0  # an edit after saving is caught too
    meta.chmod(0o644)
    meta.write_text(json.dumps(edited))
    with pytest.raises(CorruptModelError, match="content hash mismatch"):
        reg.load("zs", 2)
    meta.write_text("{not json")
    with pytest.raises(CorruptModelError, match=r"'zs' version 2: .*meta\.json"):
        reg.versions("zs")


# ---- monitor -------------------------------------------------------------------------


def alert(t: float, service: str = "cart", score: float = 5.0) -> Alert:
    return Alert(t, service, "p99", score, "warning", "zs@v1")


def test_monitor_rates_feedback_and_expiry() -> None:
    mon = ModelMonitor("zs@v1", n_services=4, window=86_400.0, resolve_after=600.0)
    mon.observe(0.0)
    ids = mon.record([alert(100.0), alert(200.0, "payment"), alert(300.0), alert(5000.0)])
    mon.observe(43_200.0)  # half a day: 2 service-days
    assert mon.confirm(ids[0]) == 1
    assert mon.reject(alert(300.0)) == 1
    s = mon.stats()
    assert s.service_days == pytest.approx(2.0)
    assert s.alerts == 4 and s.alert_rate == pytest.approx(2.0)
    assert (s.confirmed, s.rejected, s.expired, s.pending) == (1, 1, 2, 0)
    assert s.false_rate == pytest.approx(1.5)
    assert s.confirmed_share == pytest.approx(0.25)
    # an incident claims the alerts on its services in its span, whatever their state
    assert mon.confirm(IncidentRef(150.0, 400.0, frozenset({"payment", "cart"}))) == 2
    s = mon.stats()
    assert (s.confirmed, s.rejected, s.expired) == (3, 0, 1)
    assert (s.incidents, s.detected_incidents, s.recall) == (1, 1, 1.0)
    mon.confirm(IncidentRef(9000.0, 9100.0, frozenset({"frontend"})))
    assert mon.stats().recall == pytest.approx(0.5)


def test_monitor_window_slides() -> None:
    mon = ModelMonitor("zs@v1", n_services=1, window=3600.0, resolve_after=None)
    mon.observe(0.0)
    mon.record([alert(10.0), alert(20.0)])
    mon.observe(1800.0)
    assert mon.stats().alerts == 2 and mon.stats().pending == 2
    mon.record([alert(5000.0)])
    mon.observe(7000.0)
    s = mon.stats()
    assert s.alerts == 1 and s.start == pytest.approx(3400.0)
    assert s.service_days == pytest.approx(3600.0 / 86_400.0)
    assert mon.stats(since=6000.0).alerts == 0


def test_monitor_errors() -> None:
    with pytest.raises(MonitorError, match="n_services must be ≥ 1, not 0"):
        ModelMonitor("m", n_services=0)
    with pytest.raises(MonitorError, match="window must be > 0 s"):
        ModelMonitor("m", n_services=1, window=0.0)
    mon = ModelMonitor("m", n_services=1)
    with pytest.raises(MonitorError, match="monitor 'm': unknown alert id 42"):
        mon.confirm(42)
    with pytest.raises(MonitorError, match=r"no tracked alert cart/p99 at t=1\.0"):
        mon.reject(alert(1.0))
    with pytest.raises(MonitorError, match="not str"):
        mon.confirm("inc-1")
    with pytest.raises(MonitorError, match="incident ends before it starts"):
        mon.confirm(IncidentRef(10.0, 5.0, frozenset({"cart"})))


# ---- rollout -------------------------------------------------------------------------


def test_alerts_from_scores() -> None:
    out = alerts_from_scores(
        np.array([1.0, 4.0, np.nan, 7.0]), 3.0, SIGNALS, time=60.0, detector="zs@v1"
    )
    assert [(a.service, a.severity) for a in out] == [
        ("checkout", "warning"),
        ("payment", "critical"),
    ]
    one = alerts_from_scores(5.0, 3.0, [("system", "all")], time=0.0, detector="if@v1")
    assert len(one) == 1 and one[0].score == 5.0
    with pytest.raises(RolloutError, match="returned 2 score\\(s\\) for 4 signal\\(s\\)"):
        alerts_from_scores(np.zeros(2), 3.0, SIGNALS, time=0.0, detector="zs@v1")


def test_worse_candidate_is_not_promoted(tmp_path: Path) -> None:
    reg, ro = setup_rollout(tmp_path, {"gain": 1.5})  # effectively a lower threshold
    drive(ro, Stream(11), 0.0, DAY_STEPS)
    d = ro.decide()
    assert d.action == "reject", d.reason
    assert d.new.false_rate > d.old.false_rate + 1.0
    assert ro.state == "rejected" and ro.shadow is None
    assert reg.promoted("zs").version == 1
    assert events(tmp_path / "audit.jsonl") == ["shadow_start", "reject"]
    with pytest.raises(RolloutError, match="decide\\(\\) needs a shadow run, state is rejected"):
        ro.decide()


def test_candidate_that_misses_incidents_is_not_promoted(tmp_path: Path) -> None:
    reg, ro = setup_rollout(tmp_path, {"gain": 0.25})  # quiet, but blind to the incidents
    drive(ro, Stream(12), 0.0, DAY_STEPS)
    d = ro.decide()
    assert d.action == "reject", d.reason
    assert d.new.detected_incidents < d.old.detected_incidents == d.old.incidents == 6
    assert reg.promoted("zs").version == 1


def test_better_candidate_is_promoted_and_shadow_alerts_are_not_sent(tmp_path: Path) -> None:
    reg, ro = setup_rollout(tmp_path, {"gain": 0.75})
    sent: list[Alert] = []
    for t, x, incident in Stream(13).frames(0.0, DAY_STEPS):
        sent += ro.step(t, x)
        if incident is not None:
            ro.confirm(incident)
    assert sent and {a.detector for a in sent} == {"zs@v1"}
    assert ro.shadow.monitor.stats().alerts > 0  # the candidate alerted, in shadow only
    d = ro.decide()
    assert d.action == "promote", d.reason
    assert d.new.false_rate <= d.old.false_rate and d.new.detected_incidents == 6
    assert reg.promoted("zs").version == 2 and ro.live.version == 2
    assert ro.shadow.version == 1  # the old version stays as the fallback
    log = read_audit_log(tmp_path / "audit.jsonl")
    assert [r["event"] for r in log] == ["shadow_start", "promote"]
    assert log[1]["promoted"] == 2 and log[1]["stats"]["shadow"]["detected_incidents"] == 6


def test_decide_waits_for_evidence(tmp_path: Path) -> None:
    _, ro = setup_rollout(tmp_path, {"gain": 0.75}, min_alerts=10_000)
    drive(ro, Stream(14), 0.0, 300)
    d = ro.decide()
    assert d.action == "wait" and "need 10000" in d.reason
    assert ro.state == "shadow" and events(tmp_path / "audit.jsonl") == ["shadow_start"]


def promoted_frozen(tmp_path: Path) -> tuple[ModelRegistry, Rollout, float]:
    """v2 (frozen baseline, quieter) promoted over v1 (adaptive) after a day in shadow."""
    reg, ro = setup_rollout(tmp_path, {"gain": 0.75, "freeze_after": 500})
    t = drive(ro, Stream(15), 0.0, DAY_STEPS)
    assert ro.decide().action == "promote"
    return reg, ro, t


def test_degraded_version_is_rolled_back_automatically(tmp_path: Path) -> None:
    reg, ro, t = promoted_frozen(tmp_path)
    shift_at = t + 6 * 3600.0  # traffic doubles for good; the frozen baseline never adapts
    stream = Stream(16, shift_at=shift_at)
    drive(ro, stream, t, DAY_STEPS // 2)
    assert ro.state == "rolled_back", "the degraded version was not rolled back"
    assert ro.live.version == 1 and ro.shadow is None
    assert reg.promoted("zs").version == 1
    log = read_audit_log(tmp_path / "audit.jsonl")
    assert [r["event"] for r in log] == ["shadow_start", "promote", "rollback"]
    assert [r["seq"] for r in log] == [0, 1, 2]
    rb = log[-1]
    assert rb["time"] >= shift_at and rb["live"] == 2 and rb["promoted"] == 1
    live, old = rb["stats"]["live"], rb["stats"]["shadow"]
    assert live["false_rate"] > old["false_rate"] + 1.0
    assert ro.last_rollback is not None and ro.last_rollback.action == "rollback"
    # the rolled-back state holds: the old version runs alone, nothing more is logged
    drive(ro, stream, t + DAY_STEPS // 2 * STEP, 60)
    assert len(read_audit_log(tmp_path / "audit.jsonl")) == 3


def test_stable_promoted_version_is_kept(tmp_path: Path) -> None:
    reg, ro, t = promoted_frozen(tmp_path)
    drive(ro, Stream(16), t, DAY_STEPS // 2)  # the same workload, no shift
    assert ro.state == "promoted" and reg.promoted("zs").version == 2
    ro.retire_fallback()
    assert ro.state == "settled" and ro.shadow is None
    assert events(tmp_path / "audit.jsonl") == ["shadow_start", "promote", "fallback_retired"]
    with pytest.raises(RolloutError, match="no fallback to retire \\(state settled\\)"):
        ro.retire_fallback()


def test_rollout_errors(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    rng = np.random.default_rng(8)
    reg.save("zs", warmed(rng, 50))
    reg.save("zs", warmed(rng, 50))
    log = tmp_path / "audit.jsonl"
    with pytest.raises(RolloutError, match="'zs' has no promoted version; promote the first"):
        Rollout(reg, "zs", 1, 2, signals=SIGNALS, threshold=3.0, log_path=log)
    reg.promote("zs", 1)
    with pytest.raises(RolloutError, match="live version 2 is not the promoted one \\(1\\)"):
        Rollout(reg, "zs", 2, 1, signals=SIGNALS, threshold=3.0, log_path=log)
    with pytest.raises(RolloutError, match="candidate and live are both version 1"):
        Rollout(reg, "zs", None, 1, signals=SIGNALS, threshold=3.0, log_path=log)
    with pytest.raises(RolloutError, match="candidate: model 'zs' has no version 9"):
        Rollout(reg, "zs", 1, 9, signals=SIGNALS, threshold=3.0, log_path=log)
    with pytest.raises(RolloutError, match="margin must be ≥ 0"):
        Rollout(reg, "zs", 1, 2, signals=SIGNALS, threshold=3.0, log_path=log, margin=-1.0)
    with pytest.raises(RolloutError, match="version 1: no threshold= given and none saved"):
        Rollout(reg, "zs", 1, 2, signals=SIGNALS, log_path=log)
    with pytest.raises(RolloutError, match="no threshold given for version 2"):
        Rollout(reg, "zs", 1, 2, signals=SIGNALS, threshold={1: 3.0}, log_path=log)
    assert not log.exists()  # nothing logged for a rollout that never started
    ro = Rollout(reg, "zs", 1, 2, signals=SIGNALS[:2], threshold={1: 3.0, 2: 4.0}, log_path=log)
    with pytest.raises(RolloutError, match="returned 4 score\\(s\\) for 2 signal\\(s\\)"):
        ro.step(0.0, np.zeros(4))
    ro = Rollout(reg, "zs", 1, 2, signals=SIGNALS, threshold=3.0, log_path=log)
    ro.step(60.0, np.zeros(4))
    with pytest.raises(RolloutError, match=r"frame time 0\.0 is before the previous one"):
        ro.step(0.0, np.zeros(4))


def test_thresholds_can_travel_with_versions(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    rng = np.random.default_rng(9)
    reg.save("zs", warmed(rng, 50), metrics={"threshold": 3.0})
    reg.save("zs", warmed(rng, 50), metrics={"threshold": 4.5})
    reg.promote("zs", 1)
    ro = Rollout(reg, "zs", None, 2, signals=SIGNALS, log_path=tmp_path / "a.jsonl")
    assert (ro.live.threshold, ro.shadow.threshold) == (3.0, 4.5)


# ---- audit log -----------------------------------------------------------------------


def test_audit_log_survives_a_crash_mid_write(tmp_path: Path) -> None:
    reg, ro = setup_rollout(tmp_path, {"gain": 0.75})
    path = tmp_path / "audit.jsonl"
    drive(ro, Stream(13), 0.0, DAY_STEPS)
    assert ro.decide().action == "promote"
    complete = path.read_bytes()
    # the process dies halfway through writing the next record
    torn = json.dumps({"seq": 2, "event": "rollback", "reason": "x" * 50}).encode()
    path.write_bytes(complete + torn[: len(torn) // 2])
    assert [r["event"] for r in read_audit_log(path)] == ["shadow_start", "promote"]
    # a restarted process reopens the log: the torn tail is cut, numbering continues
    ro2 = Rollout(reg, "zs", 2, 1, signals=SIGNALS, threshold=3.0, log_path=path)
    del ro2
    raw = path.read_bytes()
    assert raw.startswith(complete) and raw.endswith(b"\n")
    lines = raw.decode().splitlines()
    records = [json.loads(line) for line in lines]  # every line is complete JSON
    assert [r["event"] for r in records] == ["shadow_start", "promote", "shadow_start"]
    assert [r["seq"] for r in records] == [0, 1, 2]


def test_audit_log_damage_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = AuditLog(path)
    log.append({"event": "a"})
    log.append({"event": "b"})
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][:5] + "\n" + lines[0] + "\n")
    with pytest.raises(AuditLogError, match=r"log\.jsonl:2: damaged audit record"):
        read_audit_log(path)
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "nan.jsonl").append({"x": float("nan")})
