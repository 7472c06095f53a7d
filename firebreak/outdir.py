"""Output directories: never mix a new run with an old one's files, never clear the wrong folder.

A run directory is read as a whole (metrics, labels, summary, audit log), so stale files of
an earlier run beside new ones are silent nonsense. Every command that writes a directory
refuses one that already holds files, unless the user passes `--force`, which clears it
first. Clearing is refused outright for folders whose loss would hurt far beyond a run:
the file system root, the home directory, the current directory or any folder above it,
and any folder holding a `.git`.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from twin.errors import FirebreakError

FORCE_HELP = "clear the output directory first if it holds files (refused for . and above)"


class OutputDirError(FirebreakError):
    """An output directory that cannot be used as asked."""


def add_force(parser: argparse.ArgumentParser) -> None:
    """The `--force` flag every directory-writing command takes."""
    parser.add_argument("--force", action="store_true", help=FORCE_HELP)


def _too_precious(path: Path) -> str | None:
    resolved = path.resolve()
    home = Path.home().resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        return "it is the file system root"
    if resolved == home:
        return "it is your home directory"
    if resolved == cwd or resolved in cwd.parents:
        return "it is the current directory or one above it"
    if (resolved / ".git").exists():
        return "it holds a .git repository"
    return None


def prepare_output_dir(text: str | Path, force: bool, option: str = "--out") -> Path:
    """The directory to write into, created and empty; errors name the option and the path."""
    if str(text).strip() == "":
        raise OutputDirError(f"{option}: empty path (give a directory to write the run into)")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{option}: {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise OutputDirError(
                f"{option}: {path} already holds files (another run's?); choose an empty "
                "directory or pass --force to clear it first"
            )
        reason = _too_precious(path)
        if reason is not None:
            raise OutputDirError(f"{option}: refusing to clear {path}: {reason}")
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"{option}: cannot create {path}: {exc.strerror or exc}") from None
    return path


def prepare_output_file(text: str | Path, option: str = "-o") -> Path:
    """A file to write: not a directory, and its folder must already exist (as `cp` has it)."""
    if str(text).strip() == "":
        raise OutputDirError(f"{option}: empty path")
    path = Path(text)
    if path.is_dir():
        raise OutputDirError(f"{option}: {path} is a directory, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputDirError(f"{option}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputDirError(f"{option}: {parent} is not a directory")
    return path
