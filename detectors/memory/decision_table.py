"""Decision-time incidents in the incident library's SQLite file, in a table of their own.

The library's `incidents` table holds `sig-1` signatures (a 3-minute incident window);
the deciding layer's remedy prior needs incidents signed the way the operator signs a new
one at decision time (agents.deciding.remedy_prior, `dsig-1`). Those go to a separate
table, `decision_incidents`, with its own signature version in `meta`; the library's
public API (`IncidentLibrary.incidents`, `add`) is unchanged. This module stores plain
records (name, features, actions and their verdicts): what the features mean belongs to
the deciding layer, which checks their version on reading.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detectors.memory.library import IncidentLibrary, LibraryError

TABLE = """
CREATE TABLE IF NOT EXISTS decision_incidents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    system TEXT NOT NULL,
    features TEXT NOT NULL,
    actions TEXT NOT NULL
);
"""
VERSION_KEY = "decision_signature_version"
THRESHOLD_KEY = "remedy_prior_threshold"


def write_decision_incidents(
    path: str | Path,
    records: Sequence[dict[str, Any]],
    version: str,
    threshold: float,
) -> None:
    """Store records ({name, system, features, actions: [[kind, worked], ...]}) and the
    prior's threshold in the library at `path` (created if missing), in one transaction."""
    path = Path(path)
    with IncidentLibrary.open(path, create=not path.exists()) as lib:
        try:
            with lib.conn:
                lib.conn.executescript(TABLE)
                row = lib.conn.execute(
                    "SELECT value FROM meta WHERE key = ?", (VERSION_KEY,)
                ).fetchone()
                if row is not None and row[0] != version:
                    raise LibraryError(
                        f"{path}: {VERSION_KEY} {row[0]!r} does not match {version!r}"
                    )
                for r in records:
                    lib.conn.execute(
                        "INSERT INTO decision_incidents (name, system, features, actions) "
                        "VALUES (?, ?, ?, ?)",
                        (
                            str(r["name"]),
                            str(r["system"]),
                            json.dumps([float(v) for v in r["features"]]),
                            json.dumps([[str(k), bool(ok)] for k, ok in r["actions"]]),
                        ),
                    )
                for key, value in ((VERSION_KEY, version), (THRESHOLD_KEY, repr(threshold))):
                    lib.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        except sqlite3.IntegrityError as exc:
            raise LibraryError(f"{path}: cannot write decision incidents ({exc})") from None
        except sqlite3.Error as exc:
            raise LibraryError(f"{path}: cannot write ({exc})") from None


def read_decision_incidents(path: str | Path, version: str) -> tuple[list[dict], float]:
    """(records, threshold) of the library at `path`; LibraryError naming the file when it
    holds none, or holds another version's."""
    path = Path(path)
    with IncidentLibrary.open(path) as lib:
        try:
            meta = dict(lib.conn.execute("SELECT key, value FROM meta").fetchall())
            if VERSION_KEY not in meta:
                raise LibraryError(f"{path}: no decision-time incidents (run remedy-prior learn)")
            if meta[VERSION_KEY] != version:
                raise LibraryError(
                    f"{path}: {VERSION_KEY} {meta[VERSION_KEY]!r} does not match {version!r}"
                )
            rows = lib.conn.execute(
                "SELECT name, system, features, actions FROM decision_incidents ORDER BY id"
            ).fetchall()
        except sqlite3.Error as exc:
            raise LibraryError(f"{path}: cannot read ({exc})") from None
    try:
        threshold = float(meta.get(THRESHOLD_KEY, "nan"))
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold) or threshold < 0:
        raise LibraryError(f"{path}: meta {THRESHOLD_KEY} = {meta.get(THRESHOLD_KEY)!r}")
    out = []
    for name, system, features, actions in rows:
        try:
            out.append(
                {
                    "name": name,
                    "system": system,
                    "features": [float(v) for v in json.loads(features)],
                    "actions": [(str(k), bool(ok)) for k, ok in json.loads(actions)],
                }
            )
        except (ValueError, TypeError) as exc:
            raise LibraryError(f"{path}: decision incident {name!r}: bad record ({exc})") from None
    return out, threshold
