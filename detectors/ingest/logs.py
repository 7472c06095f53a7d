"""Logs with trace ids (CSV or JSON lines) into the stack's log frame.

Columns: `time` (epoch seconds), `pod`, `service`, `trace`, `span`, `level` and `template`.
A line's template is what stays fixed between its occurrences: `LEVEL logger#line` for the
usual Java layout (`16:42:22.382 INFO  t.s.TravelServiceImpl#532 ...`), the structured
`template_id` when a record has one (the twin's), otherwise the level and the first words
with numbers and ids masked. Docker's JSON wrapping (`{"log": "...", "stream": ...}`) is
taken off. Real files break: a row spliced from two lines keeps its first fields (said so);
a line that cannot be read at all fails naming its row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.ingest.clock import to_seconds
from detectors.ingest.errors import IngestError, fail, require_file
from detectors.ingest.names import service_of_pod
from detectors.ingest.wide_csv import read_csv_frame

LOG_COLUMNS = ("time", "pod", "service", "trace", "span", "level", "template")
ALIASES = {
    "time": ("timeunixnano", "time_unix_nano", "time", "timestamp", "ts", "@timestamp", "t"),
    "pod": ("podname", "pod_name", "pod", "k8s.pod.name", "service", "service_name", "servicename"),
    "trace": ("traceid", "trace_id", "trace"),
    "span": ("spanid", "span_id", "span"),
    "level": ("level", "severity", "severitytext", "severity_text", "loglevel"),
    "message": ("log", "message", "msg", "body", "line"),
    "template": ("template_id", "template"),
}
_JAVA = re.compile(
    r"^\s*(?:\d\d:\d\d:\d\d[.,]\d+\s+)?(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\s+(\S+)"
)
_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\b")
_MASK = re.compile(r"[0-9a-fA-F]{8,}|\d+")


def _pick(columns: Sequence[str], role: str) -> str | None:
    lowered = {str(c).strip().lower(): str(c) for c in columns}
    return next((lowered[a] for a in ALIASES[role] if a in lowered), None)


def unwrap(text: str) -> str:
    """The line inside Docker's JSON log wrapping (the text itself when not wrapped)."""
    s = str(text)
    if s.startswith("{") and '"log"' in s:
        try:
            return str(json.loads(s).get("log", s))
        except (ValueError, AttributeError):
            return s
    return s


def template_of(line: str, level: str | None = None) -> tuple[str, str]:
    """(level, template) of one log line."""
    m = _JAVA.match(line)
    if m:
        lv = "WARN" if m.group(1) == "WARNING" else m.group(1)
        return lv, f"{lv} {m.group(2)}"
    if not level:
        found = _LEVEL.search(line[:200])
        level = found.group(1) if found else ("ERROR" if "Exception" in line[:200] else "OTHER")
    level = str(level).upper()
    return level, f"{level} {_MASK.sub('#', line.strip()[:60])}"


def _spliced_rows(path: Path, width: int, notes: list[str]):
    def keep_first(fields: list[str]) -> list[str]:
        notes.append(
            f"{path}: a row with {len(fields)} fields (two lines spliced) kept its first {width}"
        )
        return fields[:width]

    return keep_first


def _read_csv(path: Path, notes: list[str]) -> pd.DataFrame:
    try:
        return read_csv_frame(path, dtype=str, keep_default_na=False)
    except IngestError as exc:
        header = pd.read_csv(path, nrows=0).columns
        notes.append(f"{exc} -- read again with the tolerant parser")
        return read_csv_frame(
            path, dtype=str, keep_default_na=False, engine="python",
            on_bad_lines=_spliced_rows(path, len(header), notes),
        )  # fmt: skip


def _read_jsonl(path: Path, notes: list[str]) -> pd.DataFrame:
    """JSON records, one a line. A last line with no newline that does not parse is the
    write a killed writer left cut: skipped, and said (a log shipper does the same)."""
    records = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n") and not fh.read(1):
                    notes.append(f"{path}: line {n} is cut short (a killed writer?); skipped")
                    continue
                fail(path, f"not a JSON record ({exc.msg})", row=n)
            if not isinstance(rec, dict):
                fail(path, "not a JSON object", row=n)
            records.append(rec)
    if not records:
        raise IngestError(f"{path}: no log records")
    return pd.DataFrame.from_records(records).astype("string").fillna("")


def read_logs(paths: str | Path | Sequence[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """(log frame, notes) from CSV or JSON-lines log files."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    frames, notes = [], []
    for path in paths:
        require_file(path)
        jsonl = path.name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson"))
        raw = _read_jsonl(path, notes) if jsonl else _read_csv(path, notes)
        frames.append(_one(raw, path, notes))
    if not frames:
        raise IngestError("no log files given")
    logs = pd.concat(frames, ignore_index=True)
    before = len(logs)
    logs = logs.drop_duplicates(["time", "pod", "trace", "span", "template", "_line"])
    if len(logs) < before:
        notes.append(f"{before - len(logs)} repeated log line(s) kept once")
    logs = logs.sort_values("time", kind="stable").reset_index(drop=True)
    return logs[list(LOG_COLUMNS)], list(dict.fromkeys(notes))


def _one(raw: pd.DataFrame, path: Path, notes: list[str]) -> pd.DataFrame:
    cols = {role: _pick(list(raw.columns), role) for role in ALIASES}
    if cols["time"] is None or (cols["message"] is None and cols["template"] is None):
        fail(
            path,
            "log records need a time and a message "
            f"(columns: {', '.join(map(str, raw.columns[:8]))})",
        )
    times, note = to_seconds(raw[cols["time"]], path, cols["time"])
    notes.append(f"log {note}")
    lines = raw[cols["message"]].map(unwrap) if cols["message"] else pd.Series([""] * len(raw))
    given_level = raw[cols["level"]] if cols["level"] else pd.Series([None] * len(raw))
    if cols["template"]:
        levels = given_level.astype("string").fillna("OTHER").str.upper().to_numpy(dtype=str)
        templates = [f"{lv} {tid}" for lv, tid in zip(levels, raw[cols["template"]], strict=True)]
    else:
        pairs = [template_of(line, lv) for line, lv in zip(lines, given_level, strict=True)]
        levels = np.array([p[0] for p in pairs], dtype=object)
        templates = [p[1] for p in pairs]
    pods = raw[cols["pod"]].astype(str).str.strip() if cols["pod"] else pd.Series([""] * len(raw))
    return pd.DataFrame(
        {
            "time": times,
            "pod": pods.to_numpy(),
            "service": [service_of_pod(p) for p in pods],
            "trace": raw[cols["trace"]].astype(str).to_numpy() if cols["trace"] else "",
            "span": raw[cols["span"]].astype(str).to_numpy() if cols["span"] else "",
            "level": levels,
            "template": templates,
            "_line": lines.to_numpy(),
        }
    )
