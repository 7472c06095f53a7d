"""The remediation audit log: why every automated decision was taken, and what came of it.

An append-only JSONL file, one record per line. Each record is written with a single
`write` on a descriptor opened with O_APPEND and fsync'ed before the call returns, so a
crash loses at most the record being written, never an earlier one. Nothing already written
is ever changed: outcomes are new records that name their decision by id, and a torn last
line left by a crash is closed with a newline when the log is reopened (followed by a
`recovery` record saying so) rather than cut away.

Every record carries `seq` (1, 2, ... continuing across reopens), `type` and `time` (the
simulated time the caller gives; a `wall` clock reading too when a clock is passed, off by
default so a seeded run writes the same bytes twice). Non-finite floats are written as null
so every line is strict JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.contracts import Decision, IncidentView
from twin.errors import FirebreakError

try:  # one writer per file; POSIX only, elsewhere the log simply is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

RESERVED = ("seq", "type", "time", "wall")


class AuditError(FirebreakError):
    """The audit log cannot be opened or written, or a record cannot be serialised."""


# -------------------------------------------------------------------------- serialising
def plain(obj: Any) -> Any:
    """JSON-ready plain data: `to_dict()` where there is one, dataclasses, numpy scalars."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "to_dict"):
        return plain(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        return [plain(v) for v in items]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return plain(obj.item())
    raise AuditError(f"cannot write {type(obj).__name__} {obj!r} to the audit log")


# ------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class AuditRead:
    """What `read_audit` found: the complete records, and any line that was not one.

    `truncated` is True when the file ends in a torn line (a crash mid-write); `damaged`
    lists (line number, why) for every line that is not a complete record, the torn tail
    included.
    """

    records: tuple[dict[str, Any], ...]
    damaged: tuple[tuple[int, str], ...] = ()
    truncated: bool = False

    @property
    def intact(self) -> bool:
        return not self.damaged

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == kind]

    def outcomes(self, decision_id: str) -> list[dict[str, Any]]:
        """The outcome records of one decision, in the order they were written."""
        return [
            r
            for r in self.records
            if r.get("type") == "outcome" and r.get("decision") == decision_id
        ]


def _parse(line: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError as exc:
        return None, f"not JSON ({exc.msg})"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    seq = record.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int):
        return None, "no integer seq"
    return record, ""


def read_audit(path: str | Path) -> AuditRead:
    """Read every complete record back; a torn or damaged line is reported, not fatal."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AuditError(f"{path}: audit log not found") from None
    except IsADirectoryError:
        raise AuditError(f"{path}: is a directory, expected an audit log file") from None
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends in a newline, else the unterminated rest
    records: list[dict[str, Any]] = []
    damaged: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record, why = _parse(line)
        if record is None:
            damaged.append((number, why))
        else:
            records.append(record)
    truncated = False
    if tail.strip():
        record, why = _parse(tail)
        if record is None:  # a crash mid-write; a whole record missing its newline is kept
            truncated = True
            damaged.append((len(lines) + 1, f"torn last line ({why}, {len(tail)} bytes)"))
        else:
            records.append(record)
    return AuditRead(tuple(records), tuple(damaged), truncated)


# ------------------------------------------------------------------------------ writing
class AuditLog:
    """The append-only writer; a context manager. One writer per file (an exclusive lock).

    `clock`, when given (e.g. `time.time`), adds a `wall` reading to each record.
    `fsync=False` skips the fsync (tests of throughput only; a crash may then lose records).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] | None = None,
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._torn = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot open the audit log: {exc.strerror}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise AuditError(f"{self.path}: another writer has the audit log open") from None
        self._fd = fd
        found = read_audit(self.path)
        seqs = [r["seq"] for r in found.records]
        self._seq = max(seqs, default=0)
        self._decisions = {
            r["id"] for r in found.records if r.get("type") == "decision" and "id" in r
        }
        last_time = found.records[-1].get("time") if found.records else None
        if not self._ends_clean():
            self._write_bytes(b"\n")  # close the torn line; never rewrite what is there
            if found.truncated:
                where, why = found.damaged[-1]
                self.append("recovery", last_time, {"torn_line": where, "detail": why})

    # ------------------------------------------------------------------------- basics
    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def last_seq(self) -> int:
        """The sequence number of the last record written (0 for an empty log)."""
        return self._seq

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ends_clean(self) -> bool:
        """The file is empty or ends in a newline (else the next record would join a torn line)."""
        with open(self.path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def _write_bytes(self, data: bytes) -> None:
        if self._fd is None:
            raise AuditError(f"{self.path}: the audit log is closed")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot write the audit log: {exc.strerror}") from None

    def append(
        self,
        kind: str,
        time: float | None,
        body: Mapping[str, Any] | None = None,
        *,
        _prepare: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> int:
        """Write one record of type `kind` at simulated `time`; return its seq.

        It is durable (flushed and fsync'ed) when this returns.
        """
        fields = dict(body or {})
        clash = [k for k in RESERVED if k in fields]
        if clash:
            raise AuditError(f"audit record {kind!r}: field {clash[0]!r} is reserved")
        with self._lock:
            if self._fd is None:
                raise AuditError(f"{self.path}: the audit log is closed")
            seq = self._seq + 1
            record: dict[str, Any] = {"seq": seq, "type": kind, "time": time}
            if self._clock is not None:
                record["wall"] = self._clock()
            if _prepare is not None:
                record.update(_prepare(seq))
            record.update(fields)
            line = json.dumps(plain(record), separators=(",", ":"), allow_nan=False) + "\n"
            # after a failed write the file may end in a torn line: start on a fresh one
            lead = "\n" if self._torn else ""
            self._torn = True
            self._write_bytes((lead + line).encode("utf-8"))
            self._torn = False
            self._seq = seq
        return seq

    # ------------------------------------------------------------------------ helpers
    def decision(
        self,
        decision: Decision,
        incident: IncidentView | None = None,
        *,
        verdict: Any = None,
        approval: Any = None,
        guardrails: Mapping[str, Any] | None = None,
    ) -> str:
        """Log a decision with everything behind it; return its id for the outcome records.

        inputs: the incident as the deciding layer saw it; candidates with their scores;
        the chosen action; the automation level; `approval` (who approved or refused, and
        when: free-form plain data, None when none was needed); the guardrail `verdict`
        (anything with `to_dict`) and the guardrails' `state()` if given.
        """

        def ids(seq: int) -> dict[str, Any]:
            return {"id": f"d{seq}"}

        body = {
            "incident_id": decision.incident_id,
            "level": decision.level,
            "reason": decision.reason,
            "inputs": None if incident is None else incident.to_dict(),
            "candidates": [c.to_dict() for c in decision.candidates],
            "chosen": None if decision.chosen is None else decision.chosen.to_dict(),
            "approval": approval,
            "verdict": verdict,
            "guardrails": guardrails,
        }
        seq = self.append("decision", decision.time, body, _prepare=ids)
        self._decisions.add(f"d{seq}")
        return f"d{seq}"

    def outcome(
        self,
        decision_id: str,
        time: float,
        *,
        applied: bool,
        success: bool | None = None,
        action: Any = None,
        health_before: float | None = None,
        health_after: float | None = None,
        undo: Any = None,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Log what came of a decision (a new record; the decision is never rewritten).

        `applied`: whether an action reached the system; `success` None while unknown.
        Several outcomes may follow one decision (applied, then judged, then undone).
        """
        if decision_id not in self._decisions:
            raise AuditError(f"{self.path}: outcome for unknown decision {decision_id!r}")
        body = {
            "decision": decision_id,
            "applied": applied,
            "success": success,
            "action": action,
            "health_before": health_before,
            "health_after": health_after,
            "undo": undo,
            "detail": dict(detail or {}),
        }
        return self.append("outcome", time, body)

    def event(self, kind: str, time: float | None, **fields: Any) -> int:
        """Log anything else worth a trace: a breaker trip and page, a human reset, ..."""
        return self.append(kind, time, fields)
