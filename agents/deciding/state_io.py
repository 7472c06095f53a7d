"""Learned state (trust, success posteriors) as JSON files, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_state(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_state(path: str | Path, error: type[Exception]) -> Any:
    """The JSON in `path`; `error` (a FirebreakError subclass) if missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not JSON ({exc})") from None
