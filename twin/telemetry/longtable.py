"""Reading a run's long tables (metrics.parquet, edge_metrics.parquet) back, whole or in batches.

A long table is a Parquet dataset: a directory of part files in time order, as the run
directory writes it (see twin/run/directory.py), or a single Parquet file from elsewhere.
Either is opened the same way, and a path that is neither fails with the file named.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from twin.errors import FirebreakError


def open_long_table(path: Path, name: str = "metrics.parquet") -> ds.Dataset:
    """The dataset at `path`: a run directory (its `name` is read), a dataset directory of
    part files, or one Parquet file."""
    path = Path(path)
    if path.is_dir() and (path / name).exists():
        path = path / name
    if not path.exists():
        raise FirebreakError(f"{path}: no such metrics table (is this a run directory?)")
    if path.is_dir() and not any(path.glob("*.parquet")):
        raise FirebreakError(f"{path}: holds no Parquet part files (is this a run directory?)")
    try:
        return ds.dataset(path, format="parquet")
    except (OSError, pa.ArrowException) as exc:
        raise FirebreakError(f"{path}: cannot read as Parquet: {exc}") from None


def read_long_table(path: Path, name: str = "metrics.parquet") -> pa.Table:
    """The whole table (small runs; long ones read batch by batch via `open_long_table`)."""
    dataset = open_long_table(path, name)
    try:
        return dataset.to_table()
    except (OSError, pa.ArrowException) as exc:
        raise FirebreakError(f"{path}: cannot read as Parquet: {exc}") from None
