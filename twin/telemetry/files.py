"""Whole-line writes: what every telemetry writer uses so a killed run leaves readable files.

A line-oriented file (JSON lines) is only as readable as its last line. Each batch of lines
is handed to the kernel in as few `write` calls as it takes (a short write is continued at
once), never through a buffer that may flush half a line, so after SIGKILL a file ends on a
whole line or, at worst, on one batch cut by the kill itself.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd`, continuing short writes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append_bytes(path: Path, data: bytes) -> None:
    """Append `data` to `path` (created if absent) in whole writes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def open_truncated(path: Path) -> int:
    """A file descriptor on `path`, emptied, for `write_all`."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
