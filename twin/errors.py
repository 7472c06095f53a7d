"""The one error class every Firebreak failure derives from, so the CLI can print it cleanly."""

from __future__ import annotations


class FirebreakError(Exception):
    """A user-facing error: the CLI prints its message without a traceback and exits 2."""


class ScenarioError(FirebreakError):
    """A scenario or topology file is missing, malformed or inconsistent.

    The message names the file, the field path and the offending value.
    """
