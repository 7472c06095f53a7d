"""OTLP/JSON trace export: the twin's spans as one ExportTraceServiceRequest (`traces.json`).

The document groups spans per service (one `resourceSpans` entry carrying `service.name`),
which real tools (collectors, Jaeger, Tempo) read directly. Memory stays bounded on long
runs: each batch of spans is encoded at once and appended to a per-service temporary file
next to the output; `close()` assembles the document from those files and removes them. No
span is held in memory between batches, so the limit is disk, not RAM.

Encoding follows OTLP/JSON, not proto3's default JSON mapping: ids are lowercase hex
(32 digits for a trace, 16 for a span), timestamps and 64-bit integers are decimal strings,
`kind` is the SpanKind enum as an integer and `status.code` 2 marks an error.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from twin.telemetry.files import append_bytes
from twin.telemetry.spans import EPOCH_UNIX_S, Span

KIND_SERVER = 2
KIND_CLIENT = 3
KINDS = {"server": KIND_SERVER, "client": KIND_CLIENT}
STATUS_ERROR = 2
SCOPE = {"name": "firebreak.twin", "version": "1"}
_EPOCH_NS = EPOCH_UNIX_S * 1_000_000_000
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def unix_nanos(t: float) -> int:
    """Simulated seconds → unix nanoseconds, in integers so the epoch keeps full precision."""
    return _EPOCH_NS + round(t * 1e9)


def any_value(value: Any) -> dict[str, Any]:
    """A Python value as an OTLP AnyValue (int64 as a decimal string, per OTLP/JSON)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in attributes.items()]


def encode_span(span: Span) -> dict[str, Any]:
    """One span as an OTLP/JSON object (without its resource, which groups it)."""
    return json.loads(span_json(span))


@lru_cache(maxsize=65536)
def _json_string(text: str) -> str:
    return json.dumps(text)


def _value_json(value: Any) -> str:
    if isinstance(value, str):
        return '{"stringValue":' + _json_string(value) + "}"
    if value is True or value is False:
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if isinstance(value, int):
        return '{"intValue":"' + str(value) + '"}'
    return _ENCODER.encode(any_value(value))


def _attributes_json(attributes: Mapping[str, Any]) -> str:
    return ",".join(
        '{"key":' + _json_string(key) + ',"value":' + _value_json(value) + "}"
        for key, value in attributes.items()
    )


def span_json(span: Span) -> str:
    """One span as OTLP/JSON text; written by hand because spans are many and alike."""
    if span.error:
        message = _json_string(str(span.attributes.get("error.type", "error")))
        status = '{"code":' + str(STATUS_ERROR) + ',"message":' + message + "}"
    else:
        status = "{}"
    return (
        f'{{"traceId":"{span.trace_id}","spanId":"{span.span_id}",'
        f'"parentSpanId":"{span.parent_id or ""}","name":{_json_string(span.name)},'
        f'"kind":{KINDS[span.kind]},"startTimeUnixNano":"{unix_nanos(span.start)}",'
        f'"endTimeUnixNano":"{unix_nanos(span.end)}",'
        f'"attributes":[{_attributes_json(span.attributes)}],"status":{status}}}'
    )


class OtlpTraceWriter:
    """Streams spans to per-service JSON-lines spools; `close()` writes `path` as one document.

    `service_names` fixes the order of the resource groups (services seen in spans but not
    named there are appended in order of first appearance), so equal inputs give equal bytes.

    For sources that hand over every span (the request fidelity), `trace_ratio` keeps whole
    traces whose id falls below that share of the id space (as OpenTelemetry's
    TraceIdRatioBased sampler does, so the choice is the same wherever it is made), and
    `max_spans` stops accepting traces once the file holds that many spans; `dropped`
    counts the spans left out either way.
    """

    def __init__(
        self,
        path: Path,
        service_names: Iterable[str],
        *,
        trace_ratio: float = 1.0,
        max_spans: int | None = None,
    ) -> None:
        if not 0.0 <= trace_ratio <= 1.0:
            raise ValueError(f"trace_ratio must be in [0, 1], got {trace_ratio!r}")
        if max_spans is not None and max_spans < 0:
            raise ValueError(f"max_spans must be non-negative, got {max_spans!r}")
        self.path = Path(path)
        self.order: list[str] = list(service_names)
        self.trace_ratio = trace_ratio
        self.max_spans = max_spans
        self.count = 0
        self.dropped = 0
        self._index = {name: i for i, name in enumerate(self.order)}
        self._written: dict[str, int] = {}
        self._tmp: Path | None = None
        self._closed = False

    def _tmp_dir(self) -> Path:
        if self._tmp is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=".traces-", dir=self.path.parent))
        return self._tmp

    def _file_for(self, service: str) -> Path:
        if service not in self._index:
            self._index[service] = len(self.order)
            self.order.append(service)
        return self._tmp_dir() / f"{self._index[service]}.spans.jsonl"

    def add(self, spans: Sequence[Span]) -> None:
        """Encode a batch and append it to its services' files."""
        if self._closed:
            raise RuntimeError("OtlpTraceWriter.add after close")
        spans = self._admit(spans)
        if not spans:
            return
        groups: dict[str, list[str]] = {}
        for span in spans:
            groups.setdefault(span.service, []).append(span_json(span))
        for service, encoded in groups.items():
            # one span per line, whole lines per write: a killed run leaves JSON lines
            append_bytes(self._file_for(service), ("\n".join(encoded) + "\n").encode("utf-8"))
            self._written[service] = self._written.get(service, 0) + len(encoded)
        self.count += len(spans)

    def _admit(self, spans: Sequence[Span]) -> Sequence[Span]:
        """The spans kept under `trace_ratio` and `max_spans`, whole traces only."""
        if self.trace_ratio >= 1.0 and self.max_spans is None:
            return spans
        bound = int(self.trace_ratio * 2**64)
        by_trace: dict[str, list[Span]] = {}
        for span in spans:
            if self.trace_ratio >= 1.0 or int(span.trace_id[:16], 16) < bound:
                by_trace.setdefault(span.trace_id, []).append(span)
        kept: list[Span] = []
        room = None if self.max_spans is None else self.max_spans - self.count
        for members in by_trace.values():
            if room is not None:
                if len(members) > room:
                    room = 0  # the file is full: later traces are dropped too
                    continue
                room -= len(members)
            kept.extend(members)
        self.dropped += len(spans) - len(kept)
        return kept

    def close(self) -> None:
        """Assemble traces.json (an empty `resourceSpans` list when no span came)."""
        if self._closed:
            return
        self._closed = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scope = json.dumps(SCOPE, separators=(",", ":"))
        tmp = self.path.with_name(f".{self.path.name}.tmp")  # renamed when whole
        with tmp.open("w", encoding="utf-8") as out:
            out.write('{"resourceSpans":[')
            first = True
            for service in self.order:
                if not self._written.get(service):
                    continue
                resource = json.dumps(
                    {"attributes": key_values({"service.name": service})}, separators=(",", ":")
                )
                out.write(("" if first else ",") + '\n{"resource":' + resource)
                out.write(',"scopeSpans":[{"scope":' + scope + ',"spans":[\n')
                with self._file_for(service).open(encoding="utf-8") as part:
                    for i, line in enumerate(part):
                        out.write(("" if i == 0 else ",\n") + line.rstrip("\n"))
                out.write("]}]}")
                first = False
            out.write("\n]}\n")
        os.replace(tmp, self.path)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def on_spans(self, spans: Sequence[Span]) -> None:
        """Listener form of `add`, so the writer can sit among a sampler's listeners."""
        self.add(spans)
