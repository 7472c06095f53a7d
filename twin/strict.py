"""Strict readers for the files users hand in: YAML and JSON that never guess.

A duplicated key in a mapping is an error, not "the last one wins": in a scenario a second
`cartservice:` silently replaced the first. JSON's non-standard NaN and Infinity are refused
where a file is meant to be JSON. Nesting deep enough to exhaust the parser's recursion is a
clear error too. Errors name the file, the line and the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from twin.errors import FirebreakError


class StrictFormatError(FirebreakError):
    """A YAML or JSON file that is well formed but ambiguous (or too deep to read)."""


class StrictLoader(yaml.SafeLoader):
    """safe_load's loader, refusing a key that appears twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str | Path) -> Any:
    """YAML text → plain data (safe types only); duplicate keys and malformed YAML fail with
    the file, line and column."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StrictFormatError(f"{source}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise StrictFormatError(f"{source}: YAML nested too deeply to read") from None


def _no_duplicates(source: str | Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise StrictFormatError(f"{source}: duplicate JSON key {key!r}")
            out[key] = value
        return out

    return hook


def _no_constant(source: str | Path):
    def refuse(name: str) -> Any:
        raise StrictFormatError(f"{source}: {name} is not JSON (use a number or null)")

    return refuse


def load_json(text: str, source: str | Path) -> Any:
    """JSON text → plain data; duplicate keys, NaN/Infinity and malformed JSON fail with the
    file (and line and column where the parser knows them)."""
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicates(source), parse_constant=_no_constant(source)
        )
    except json.JSONDecodeError as exc:
        raise StrictFormatError(
            f"{source}: malformed JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    except RecursionError:
        raise StrictFormatError(f"{source}: JSON nested too deeply to read") from None


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file's content; a missing, unreadable or binary file fails with its name."""
    path = Path(path)
    if not path.exists():
        raise StrictFormatError(f"{path}: {what} not found")
    if path.is_dir():
        raise StrictFormatError(f"{path}: is a directory, expected a {what}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StrictFormatError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except OSError as exc:
        raise StrictFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
