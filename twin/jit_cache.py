"""Numba's on-disk cache, keyed by every compiled source of the twin together.

Why: numba stamps a cached function with its own source file only, but the flow kernel's
functions inline helpers from sibling modules (`service.py` calls `queueing.py`). After an
edit to `queueing.py` alone, the cached machine code of `service.py` kept the old helper,
and runs silently computed with it (seen while fixing a division by zero). Keying the cache
directory by a digest of all compiled sources makes any edit start a fresh cache. A user's
own `NUMBA_CACHE_DIR` wins; where the folder cannot be written, numba falls back to its
usual places.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

TWIN_ROOT = Path(__file__).resolve().parent
COMPILED_FOLDERS = ("flow", "envs", "infra")
# modules compiled code reads at compile time: `fields.py` names the state matrices' rows
# and sizes the loops over them, so machine code cached against another layout would read
# and write the wrong rows, past the matrices' ends (numba does not check bounds)
COMPILED_CONSTANTS = ("fields.py",)


def compiled_sources(root: Path = TWIN_ROOT) -> list[Path]:
    """The modules whose bytes key the cache: the compiled folders' and the constants'."""
    paths = [path for folder in COMPILED_FOLDERS for path in sorted((root / folder).glob("*.py"))]
    return paths + [root / name for name in COMPILED_CONSTANTS]


def source_digest(root: Path = TWIN_ROOT) -> str:
    """A short digest of every compiled source (names relative to `root`, and bytes)."""
    digest = hashlib.sha256()
    for path in compiled_sources(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def key_numba_cache(root: Path = TWIN_ROOT) -> str | None:
    """Point numba's cache at a folder named by the sources' digest; returns the folder, or
    None where the user chose one."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    folder = str(root / "__pycache__" / f"numba-{source_digest(root)}")
    os.environ["NUMBA_CACHE_DIR"] = folder
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba was imported first: its config has been read already
        config.CACHE_DIR = folder
    return folder
