"""The incident library: past incidents in SQLite (stdlib `sqlite3`), each with its
signature, its diagnosis (kind, root service), the actions taken and whether they worked.

The file records the signature version it was built with; opening it with another version
is refused (signatures of two feature sets cannot be compared), and so is any file that is
not an incident library. Writes are one transaction each, and a new library is built in a
temporary file that replaces the target only once complete, so an error never leaves a
half-written library behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detectors.memory.signature import SIGNATURE_VERSION, Signature
from twin.errors import FirebreakError

APPLICATION_ID = 0x46424D31  # "FBM1": marks the file as a Firebreak incident library
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    system TEXT NOT NULL,
    source TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    root TEXT NOT NULL,
    signature TEXT NOT NULL,
    actions TEXT NOT NULL
);
"""


class LibraryError(FirebreakError):
    """An incident library that cannot be opened, read or written; names the file."""


@dataclass(frozen=True)
class Action:
    """One action taken on an incident and whether it worked."""

    action: str
    worked: bool


@dataclass(frozen=True)
class Incident:
    """A stored incident: the signature is what was seen, the rest is what was known after."""

    name: str
    system: str
    source: str
    at: float
    kind: str
    root: str
    signature: Signature
    actions: tuple[Action, ...] = field(default_factory=tuple)

    def fixed_by(self) -> list[str]:
        """The actions that worked."""
        return [a.action for a in self.actions if a.worked]


def _check_version(path: Path, conn: sqlite3.Connection) -> None:
    try:
        (app,) = conn.execute("PRAGMA application_id").fetchone()
        row = conn.execute("SELECT value FROM meta WHERE key = 'signature_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise LibraryError(f"{path}: not an incident library ({exc})") from None
    if app != APPLICATION_ID or row is None:
        raise LibraryError(f"{path}: not an incident library (no signature version recorded)")
    if row[0] != SIGNATURE_VERSION:
        raise LibraryError(
            f"{path}: signature_version {row[0]!r} does not match this Firebreak's "
            f"{SIGNATURE_VERSION!r}; re-add its incidents into a new library"
        )


class IncidentLibrary:
    """An open library; use as a context manager (`with IncidentLibrary.open(p) as lib`)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | Path, *, create: bool = False) -> Iterator[IncidentLibrary]:
        """Open an existing library (or, with `create`, a new one once the block succeeds:
        it is built in a temporary file next to `path` and moved into place at the end)."""
        path = Path(path)
        if path.is_dir():
            raise LibraryError(f"{path}: is a directory, expected an incident library file")
        if path.exists() or not create:
            if not path.exists():
                raise LibraryError(f"{path}: no such incident library")
            conn = _connect(path)
            try:
                _check_version(path, conn)
                yield cls(path, conn)
            finally:
                conn.close()
            return
        if not path.parent.is_dir():
            raise LibraryError(f"{path}: folder {path.parent} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o644)  # mkstemp makes it private; a library is a shared record
        try:
            conn = _connect(tmp_path)
            try:
                with conn:
                    conn.executescript(SCHEMA)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(
                        "INSERT INTO meta VALUES ('signature_version', ?)", (SIGNATURE_VERSION,)
                    )
                yield cls(path, conn)
            finally:
                conn.close()
            os.replace(tmp_path, path)
        finally:
            tmp_path.unlink(missing_ok=True)

    def add(self, incidents: Sequence[Incident]) -> None:
        """Store incidents in one transaction: all of them, or none on any error."""
        for inc in incidents:
            if inc.signature.version != SIGNATURE_VERSION:
                raise LibraryError(
                    f"{self.path}: incident {inc.name!r} has signature_version "
                    f"{inc.signature.version!r}, the library holds {SIGNATURE_VERSION!r}"
                )
        try:
            with self.conn:
                for inc in incidents:
                    if self.conn.execute(
                        "SELECT 1 FROM incidents WHERE name = ?", (inc.name,)
                    ).fetchone():
                        raise LibraryError(
                            f"{self.path}: name {inc.name!r} is already in the library"
                        )
                    self.conn.execute(
                        "INSERT INTO incidents (name, system, source, at, kind, root, "
                        "signature, actions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            inc.name,
                            inc.system,
                            inc.source,
                            float(inc.at),
                            inc.kind,
                            inc.root,
                            json.dumps(inc.signature.to_dict(), sort_keys=True),
                            json.dumps([[a.action, a.worked] for a in inc.actions]),
                        ),
                    )
        except sqlite3.Error as exc:
            raise LibraryError(f"{self.path}: cannot write ({exc})") from None

    def incidents(self) -> list[Incident]:
        """Every stored incident, in the order added."""
        try:
            rows = self.conn.execute(
                "SELECT name, system, source, at, kind, root, signature, actions "
                "FROM incidents ORDER BY id"
            ).fetchall()
        except sqlite3.Error as exc:
            raise LibraryError(f"{self.path}: cannot read ({exc})") from None
        out = []
        for name, system, source, at, kind, root, sig, actions in rows:
            try:
                signature = Signature.from_dict(json.loads(sig))
                acts = tuple(Action(str(a), bool(w)) for a, w in json.loads(actions))
            except (ValueError, KeyError, TypeError) as exc:
                raise LibraryError(
                    f"{self.path}: incident {name!r}: bad stored record ({exc})"
                ) from None
            out.append(Incident(name, system, source, at, kind, root, signature, acts))
        return out


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, isolation_level="DEFERRED")
    except sqlite3.Error as exc:
        raise LibraryError(f"{path}: cannot open ({exc})") from None
