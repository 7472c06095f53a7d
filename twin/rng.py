"""Named random streams spawned from one seed: no global state, same seed → same bytes.

A stream's identity is its name, not the order of creation, so adding a new stochastic
component never shifts the numbers an existing one draws.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent generator for component `name` of the run seeded with `seed`."""
    key = zlib.crc32(name.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(key,)))
