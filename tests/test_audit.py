"""The audit log: round trip, durability per record, crash safety, append across reopen."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.contracts import Candidate, Decision, IncidentView
from agents.safety.audit import AuditError, AuditLog, read_audit
from agents.safety.guardrails import Guardrails
from twin.control.actions import Escalate, RestartPods, Rollback
from twin.errors import FirebreakError

ROOT = Path(__file__).resolve().parents[1]


class View:
    now = 100.0

    def services(self) -> tuple[str, ...]:
        return ("cart", "frontend")

    def replicas(self, service: str) -> int:
        return 4

    def ready(self, service: str) -> int:
        return 4

    def health(self) -> float:
        return 0.9


def incident() -> IncidentView:
    return IncidentView(
        id="inc-1",
        opened=40.0,
        now=100.0,
        services=("cart", "frontend"),
        signals=("latency", "errors"),
        detectors=("ewma",),
        n_alerts=5,
        top_cause="cart",
        cause_confidence=0.8,
        causes=(("cart", 0.8), ("frontend", 0.2)),
        signature="latency+errors",
        evidence={"z": 4.5, "nan": math.nan},
    )


def decision() -> Decision:
    restart = Candidate(RestartPods("cart"), "restart-on-errors", 0.7, 0.2, 1.0, 0.45)
    rollback = Candidate(Rollback("cart"), "rollback-on-deploy", 0.4, 0.1, 2.0, 0.2)
    return Decision("inc-1", 100.0, "auto", restart, (restart, rollback), "highest score")


def strict_json(line: str) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(line, parse_constant=refuse)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    guard = Guardrails()
    verdict = guard.check(RestartPods("cart"), View())
    with AuditLog(path) as log:
        did = log.decision(
            decision(),
            incident(),
            verdict=verdict,
            approval={"by": "auto", "granted": True},
            guardrails=guard.state(),
        )
        log.outcome(did, 100.0, applied=True, action=verdict.action, health_before=0.9)
        log.outcome(did, 160.0, applied=True, success=False, health_before=0.9, health_after=0.4)
        log.event("page", 160.0, reason=guard.page_reason, action=Escalate("help", "cart"))
    assert did == "d1"
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        strict_json(line)  # NaN written as null: every line is standard JSON
    read = read_audit(path)
    assert read.intact and not read.truncated
    assert [r["seq"] for r in read.records] == [1, 2, 3, 4]
    assert [r["type"] for r in read.records] == ["decision", "outcome", "outcome", "page"]
    first = read.records[0]
    assert first["id"] == "d1" and first["time"] == 100.0
    expected = json.loads(json.dumps(incident().to_dict()))
    assert first["inputs"] == {**expected, "evidence": {"z": 4.5, "nan": None}}
    assert [c["score"] for c in first["candidates"]] == [0.45, 0.2]
    assert first["chosen"]["action"] == {"action": "restart_pods", "service": "cart"} | {
        "share": None,
        "count": None,
    }
    assert first["level"] == "auto"
    assert first["approval"] == {"by": "auto", "granted": True}
    assert first["verdict"]["action"]["count"] == 2 and first["verdict"]["adjusted"]
    assert first["guardrails"]["tripped"] is False
    outcomes = read.outcomes("d1")
    assert [o["seq"] for o in outcomes] == [2, 3]
    assert outcomes[0]["action"]["count"] == 2
    assert outcomes[1]["success"] is False and outcomes[1]["health_after"] == 0.4
    assert read.of_type("page")[0]["action"]["reason"] == "help"
    assert "wall" not in first  # no clock by default: a seeded run writes the same bytes


def test_same_records_same_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        with AuditLog(tmp_path / name) as log:
            did = log.decision(decision(), incident())
            log.outcome(did, 130.0, applied=True, success=True)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_wall_clock_when_given(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a", clock=lambda: 1234.5) as log:
        log.event("note", 1.0, text="x")
    assert read_audit(tmp_path / "a").records[0]["wall"] == 1234.5


def test_every_record_is_on_disk_while_the_writer_is_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    try:
        for i in range(1, 6):
            seq = log.event("tick", float(i), n=i)
            assert seq == i == log.last_seq
            read = read_audit(path)  # another reader, the writer still open
            assert [r["n"] for r in read.records] == list(range(1, i + 1))
            assert path.read_bytes().endswith(b"\n")
    finally:
        log.close()
    assert log.closed


def test_append_across_reopen_keeps_records_and_continues_the_sequence(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        did = log.decision(decision(), incident())
        log.event("note", 101.0)
    before = path.read_bytes()
    with AuditLog(path) as log:
        assert log.last_seq == 2
        log.outcome(did, 200.0, applied=True, success=True)  # a decision of the last session
        assert log.decision(decision(), incident()) == "d4"
    assert path.read_bytes().startswith(before)  # nothing earlier rewritten
    read = read_audit(path)
    assert [r["seq"] for r in read.records] == [1, 2, 3, 4]
    assert read.records[2]["decision"] == "d1"


def test_torn_last_line_is_reported_then_closed_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for i in range(3):
            log.event("tick", float(i))
    with open(path, "ab") as f:  # a crash in the middle of the fourth record
        f.write(b'{"seq":4,"type":"ti')
    torn = path.read_bytes()
    read = read_audit(path)
    assert [r["seq"] for r in read.records] == [1, 2, 3]
    assert read.truncated and not read.intact
    assert read.damaged[0][0] == 4 and read.damaged[0][1].startswith("torn last line")
    with AuditLog(path) as log:
        assert log.event("tick", 9.0) == 5
    assert path.read_bytes().startswith(torn)  # closed with a newline, never cut
    read = read_audit(path)
    assert [(r["seq"], r["type"]) for r in read.records] == [
        (1, "tick"),
        (2, "tick"),
        (3, "tick"),
        (4, "recovery"),
        (5, "tick"),
    ]
    assert read.records[3]["torn_line"] == 4
    assert not read.truncated and [d[0] for d in read.damaged] == [4]


def test_a_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"seq":1,"type":"tick","time":0}')
    read = read_audit(path)
    assert [r["seq"] for r in read.records] == [1] and read.intact
    with AuditLog(path) as log:
        log.event("tick", 1.0)
    assert [r["seq"] for r in read_audit(path).records] == [1, 2]


def test_damaged_lines_are_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(
        b'{"seq":1,"type":"a"}\nnot json\n[1]\n{"type":"no seq"}\n\xff\xfe\n{"seq":2}\n'
    )
    read = read_audit(path)
    assert [r["seq"] for r in read.records] == [1, 2]
    assert read.damaged == (
        (2, "not JSON (Expecting value)"),
        (3, "not a JSON object"),
        (4, "no integer seq"),
        (5, "not UTF-8"),
    )
    assert not read.truncated


def crash_writer(path: Path) -> subprocess.Popen:
    code = f"""
import sys
from agents.safety.audit import AuditLog
log = AuditLog({str(path)!r})
i = 0
while True:
    i += 1
    log.event("tick", float(i), n=i, payload="x" * (i % 5000))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def test_crash_keeps_every_complete_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    child = crash_writer(path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if path.exists() and path.read_bytes().count(b"\n") >= 40:
                break
            if child.poll() is not None:
                pytest.fail(f"writer died: {child.stderr.read().decode()}")
            time.sleep(0.02)
        else:
            pytest.fail("the writer wrote too slowly")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    read = read_audit(path)
    n = len(read.records)
    assert n >= 40
    assert [r["seq"] for r in read.records] == list(range(1, n + 1))
    for r in read.records:
        assert r["n"] == r["seq"] and r["payload"] == "x" * (r["n"] % 5000)
    assert len(read.damaged) == int(read.truncated)  # at most the torn tail
    with AuditLog(path) as log:  # and the log carries on after the crash
        assert log.event("after", 0.0) == n + 1 + int(read.truncated)
    again = read_audit(path)
    assert [r["seq"] for r in again.records][:n] == list(range(1, n + 1))
    assert again.records[-1]["type"] == "after"


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path), pytest.raises(AuditError, match="another writer has the audit log"):
        AuditLog(path)
    AuditLog(path).close()  # free again once the first is closed


def test_errors(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        with pytest.raises(AuditError, match="outcome for unknown decision 'd9'"):
            log.outcome("d9", 1.0, applied=False)
        with pytest.raises(AuditError, match="audit record 'note': field 'seq' is reserved"):
            log.event("note", 1.0, seq=3)
        with pytest.raises(AuditError, match="cannot write object"):
            log.event("note", 1.0, thing=object())
        assert log.last_seq == 0  # nothing half-written
    with pytest.raises(AuditError, match="the audit log is closed"):
        log.event("note", 2.0)
    with pytest.raises(AuditError, match="audit log not found"):
        read_audit(tmp_path / "missing.jsonl")
    with pytest.raises(AuditError, match="is a directory"):
        read_audit(tmp_path)
    with pytest.raises(AuditError, match="cannot open the audit log"):
        AuditLog(tmp_path)
    assert issubclass(AuditError, FirebreakError)
    assert path.read_bytes() == b""
