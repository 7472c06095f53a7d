"""The ingestion error: a real file the stack cannot read, named down to column and row."""

from __future__ import annotations

from pathlib import Path

from twin.errors import FirebreakError


class IngestError(FirebreakError):
    """A telemetry file that cannot be read; the message names the file, column and row."""


def where(path: str | Path, column: str | None = None, row: int | None = None) -> str:
    """`file: column 'x', row 12` (rows count data rows from 1, as a spreadsheet shows them
    below the header)."""
    out = str(path)
    if column is not None:
        out += f": column {column!r}"
    if row is not None:
        out += f"{',' if column is not None else ':'} row {row}"
    return out


def fail(path: str | Path, message: str, column: str | None = None, row: int | None = None):
    """Raise an IngestError located at file/column/row."""
    raise IngestError(f"{where(path, column, row)}: {message}")


def require_file(path: str | Path) -> Path:
    """The path, or a clear error when it is missing or a directory."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if path.is_dir():
        raise IngestError(f"{path}: is a directory, expected a file")
    return path
