"""Writers of the run directory, fed chunk by chunk so a long run never sits in memory.

metrics.parquet and edge_metrics.parquet are long tables (time, service, metric, value)
written on a background thread (pyarrow releases the GIL), events.jsonl is appended per
chunk. Summary, labels and plots are written at the end by the caller.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.fields import EDGE_METRICS, SERVICE_METRICS
from twin.telemetry.frame import Chunk

_DONE = object()


def _dictionary(codes: np.ndarray, names: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), pa.array(names))


class LongParquetWriter:
    """(time, <entity>, metric, value) rows from T × entities × metrics blocks, off-thread."""

    def __init__(
        self, path: Path, entity_column: str, entities: list[str], metrics: tuple[str, ...]
    ):
        self.entities = entities
        self.metrics = list(metrics)
        self.entity_column = entity_column
        schema = pa.schema(
            [
                ("time", pa.float64()),
                (entity_column, pa.dictionary(pa.int32(), pa.string())),
                ("metric", pa.dictionary(pa.int32(), pa.string())),
                ("value", pa.float64()),
            ]
        )
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name=f"write-{path.name}", daemon=True)
        self.thread.start()

    def put(self, times: np.ndarray, block: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        if block.size:
            self.queue.put((times, block))

    def _work(self) -> None:
        n_ent, n_met = len(self.entities), len(self.metrics)
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if self.error is not None:
                continue
            try:
                times, block = item
                rows = len(times)
                table = pa.table(
                    {
                        "time": np.repeat(times, n_ent * n_met),
                        self.entity_column: _dictionary(
                            np.tile(np.repeat(np.arange(n_ent), n_met), rows), self.entities
                        ),
                        "metric": _dictionary(
                            np.tile(np.arange(n_met), rows * n_ent), self.metrics
                        ),
                        "value": block.reshape(-1),
                    }
                )
                self.writer.write_table(table)
            except BaseException as exc:  # surfaced on the next put() or at close()
                self.error = exc

    def close(self) -> None:
        self.queue.put(_DONE)
        self.thread.join()
        self.writer.close()
        if self.error is not None:
            raise self.error


class RunDirectoryWriter:
    """A sink writing metrics, edge metrics and events of a run into its directory."""

    def __init__(self, out: Path, services: tuple[str, ...], edges: tuple[tuple[str, str], ...]):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.metrics = LongParquetWriter(
            out / "metrics.parquet", "service", list(services), SERVICE_METRICS
        )
        self.edge_metrics = LongParquetWriter(
            out / "edge_metrics.parquet", "edge", [f"{a}->{b}" for a, b in edges], EDGE_METRICS
        )
        self.events_file = (out / "events.jsonl").open("w", encoding="utf-8")
        self.ticks = 0

    def on_chunk(self, chunk: Chunk) -> None:
        self.metrics.put(chunk.times, chunk.values)
        if chunk.edge_values.shape[1]:
            self.edge_metrics.put(chunk.times, chunk.edge_values)
        for record in chunk.events:
            self.events_file.write(json.dumps(record, sort_keys=True) + "\n")
        self.events_file.flush()
        self.ticks += len(chunk.times)

    def close(self) -> None:
        self.events_file.close()
        self.metrics.close()
        self.edge_metrics.close()


def write_json(path: Path, data: Any) -> None:
    """Stable, human-readable JSON (sorted keys) so identical runs give identical bytes."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_plain) + "\n", "utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
