"""Writers of the run directory, fed chunk by chunk so a long run never sits in memory, and
written so that whatever was flushed survives the process being killed.

metrics.parquet and edge_metrics.parquet are long tables (time, service, metric, value),
each a directory of Parquet part files (`part-000000.parquet`, one per chunk, in time order),
the layout pyarrow, pandas, DuckDB and Spark read as one table. Why parts: a Parquet file is
only readable once its footer is written, so one file per run loses everything to a SIGKILL
or an out-of-memory kill; a part is written under a hidden name and renamed into place, so
it is either complete or absent. Parts are written on a background thread (pyarrow releases
the GIL). events.jsonl gets whole lines only (one write per chunk). JSON files are written
to a temporary name and renamed, so a reader never sees half a summary.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.fields import EDGE_METRICS, NODE_METRICS, SERVICE_METRICS
from twin.telemetry.files import open_truncated, write_all
from twin.telemetry.frame import Chunk

_DONE = object()
PART = "part-{:06d}.parquet"


def _dictionary(codes: np.ndarray, names: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), pa.array(names))


class LongParquetWriter:
    """(time, <entity>, metric, value) rows from T × entities × metrics blocks, off-thread,
    one closed part file per block under `path/`."""

    def __init__(
        self, path: Path, entity_column: str, entities: list[str], metrics: tuple[str, ...]
    ):
        self.path = path
        self.entities = entities
        self.metrics = list(metrics)
        self.entity_column = entity_column
        path.mkdir(parents=True, exist_ok=True)
        self.parts = 0
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self._closed = False
        self.thread = threading.Thread(target=self._work, name=f"write-{path.name}", daemon=True)
        self.thread.start()

    def put(self, times: np.ndarray, block: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        if block.size:
            self.queue.put((times, block))

    def _table(self, times: np.ndarray, block: np.ndarray) -> pa.Table:
        n_ent, n_met = len(self.entities), len(self.metrics)
        rows = len(times)
        return pa.table(
            {
                "time": np.repeat(times, n_ent * n_met),
                self.entity_column: _dictionary(
                    np.tile(np.repeat(np.arange(n_ent), n_met), rows), self.entities
                ),
                "metric": _dictionary(np.tile(np.arange(n_met), rows * n_ent), self.metrics),
                "value": block.reshape(-1),
            }
        )

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if self.error is not None:
                continue
            try:
                name = PART.format(self.parts)
                tmp = self.path / f".{name}.tmp"
                pq.write_table(self._table(*item), tmp, compression="zstd")
                os.replace(tmp, self.path / name)
                self.parts += 1
            except BaseException as exc:  # surfaced on the next put() or at close()
                self.error = exc

    def close(self) -> None:
        """Write what is queued and stop; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.queue.put(_DONE)
        self.thread.join()
        if self.error is not None:
            raise self.error


class RunDirectoryWriter:
    """A sink writing metrics, edge metrics, node metrics (with infrastructure: a long
    table of time, node, metric, value) and events of a run into its directory."""

    def __init__(
        self,
        out: Path,
        services: tuple[str, ...],
        edges: tuple[tuple[str, str], ...],
        nodes: tuple[str, ...] = (),
    ):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.metrics = LongParquetWriter(
            out / "metrics.parquet", "service", list(services), SERVICE_METRICS
        )
        self.edge_metrics = LongParquetWriter(
            out / "edge_metrics.parquet", "edge", [f"{a}->{b}" for a, b in edges], EDGE_METRICS
        )
        self.node_metrics = None
        if nodes:
            self.node_metrics = LongParquetWriter(
                out / "node_metrics.parquet", "node", list(nodes), NODE_METRICS
            )
        self._events = open_truncated(out / "events.jsonl")
        self.ticks = 0

    def on_chunk(self, chunk: Chunk) -> None:
        self.metrics.put(chunk.times, chunk.values)
        if chunk.edge_values.shape[1]:
            self.edge_metrics.put(chunk.times, chunk.edge_values)
        if self.node_metrics is not None and chunk.node_values is not None:
            self.node_metrics.put(chunk.times, chunk.node_values)
        if chunk.events:
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in chunk.events)
            write_all(self._events, text.encode("utf-8"))
        self.ticks += len(chunk.times)

    def close(self) -> None:
        """Close every file, the metrics' queued parts written first; safe to call twice."""
        if self._events >= 0:
            os.close(self._events)
            self._events = -1
        try:
            self.metrics.close()
        finally:
            try:
                self.edge_metrics.close()
            finally:
                if self.node_metrics is not None:
                    self.node_metrics.close()


def write_json(path: Path, data: Any) -> None:
    """Stable, human-readable JSON (sorted keys) so identical runs give identical bytes;
    written to a temporary name and renamed, so a reader never sees half a file."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_plain) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
