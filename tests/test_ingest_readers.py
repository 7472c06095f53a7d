"""Every telemetry reader on small files: real excerpts (tests/data/real) where the shared
data has the format, small written files where it does not; the mess of real files and the
errors a bad one gets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.ingest.errors import IngestError
from detectors.ingest.logs import read_logs
from detectors.ingest.long_csv import read_long_csv
from detectors.ingest.otlp_json import read_otlp_json
from detectors.ingest.petshop_csv import read_petshop_csv
from detectors.ingest.prometheus import read_prometheus_json
from detectors.ingest.read import read_metrics, read_traces, sniff_metrics
from detectors.ingest.span_csv import read_span_csv
from detectors.ingest.wide_csv import read_wide_csv

REAL = Path(__file__).parent / "data" / "real"
T0 = 1_700_000_000


# -- RCAEval / RCD wide CSV -------------------------------------------------------------------


def write_rcaeval(path: Path, n: int = 30) -> None:
    t = T0 + 15 * np.arange(n)
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "time": t,
            "carts_lat_50": rng.normal(0.02, 0.001, n),
            "carts_lat_90": rng.normal(0.05, 0.002, n),
            "carts_cpu": rng.normal(0.3, 0.01, n),
            "carts-db_cpu": rng.normal(0.1, 0.01, n),
            "front-end_workload": rng.normal(50, 2, n),
        }
    ).to_csv(path, index=False)


def test_rcaeval_columns_keep_underscores_in_metric_names(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    write_rcaeval(path)
    table = read_wide_csv(path)
    assert table.services() == ["carts", "carts-db", "front-end"]  # 3 services, not carts_lat
    wide = table.wide()
    assert "carts_lat-50" in wide.columns and "carts-db_cpu" in wide.columns
    assert {c.rpartition("_")[0] for c in wide.columns if c != "time"} == set(table.services())
    kinds = {s.metric: s.kind.kind for s in table.signals}
    assert kinds["lat_50"] == "latency" and kinds["workload"] == "load"


def test_known_services_win_over_the_first_underscore(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    pd.DataFrame({"time": [1, 2, 3], "order_db_cpu": [1.0, 2, 3], "order_cpu": [1.0, 1, 1]}).to_csv(
        path, index=False
    )
    table = read_wide_csv(path, services=["order", "order_db"])
    assert sorted(table.services()) == ["order", "order_db"]
    assert sorted(read_wide_csv(path).services()) == ["order"]  # RCAEval's rule without them


def test_epoch_units_are_detected_and_said(tmp_path: Path) -> None:
    for unit, scale in (("seconds", 1), ("milliseconds", 1e3), ("microseconds", 1e6),
                        ("nanoseconds", 1e9)):  # fmt: skip
        path = tmp_path / f"{unit}.csv"
        t = (T0 + 60 * np.arange(5)) * scale
        pd.DataFrame({"time": t.astype("int64"), "a_cpu": np.arange(5.0)}).to_csv(path, index=False)
        table = read_wide_csv(path)
        assert table.times[0] == pytest.approx(T0)
        assert any(f"epoch {unit}" in n for n in table.notes)


def test_unsorted_repeated_times_gaps_and_nan_are_put_right_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_text("time,a_cpu,a_mem\n3,3,30\n1,1,\n2,2,20\n2,4,40\n30,5,50\n31,6,NaN\n")
    table = read_wide_csv(path)
    assert list(table.times) == [1, 2, 3, 30, 31]
    assert table.values[1, 0] == 3.0  # the two rows at t=2 merged into their mean
    assert np.isnan(table.values[0, 1])  # missing stays missing
    text = " ".join(table.notes)
    assert "backwards" in text and "repeated" in text and "gap" in text and "missing" in text


def test_ground_truth_and_excluded_columns_are_never_signals(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    pd.DataFrame(
        {"timestamp": np.arange(10), "value": np.arange(10.0), "label": [0] * 9 + [1],
         "is_anomaly": [0] * 10, "debug": np.ones(10)}
    ).to_csv(path, index=False)  # fmt: skip
    table = read_wide_csv(path, exclude=["deb*"])
    assert table.columns == ["value"]
    assert set(table.excluded) == {"label", "is_anomaly", "debug"}


def test_counters_become_rates_with_resets(tmp_path: Path) -> None:
    path = tmp_path / "counter.csv"
    pd.DataFrame({"time": [0, 10, 20, 30], "api_requests_total": [100, 200, 50, 150]}).to_csv(
        path, index=False
    )
    table = read_wide_csv(path)
    rate = table.values[:, 0]
    assert np.isnan(rate[0]) and rate[1] == 10.0 and rate[2] == 5.0 and rate[3] == 10.0
    assert any("reset" in n for n in table.notes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b\n1,2\n", "no time column"),
        ("time,b\nyesterday,1\n", "column 'time', row 1: unreadable time 'yesterday'"),
        ("time,b\n1,x\n2,y\n", "no numeric signal columns"),
        (
            "time,a_cpu\n1,0.5\n2,0.6\n3,oops\n4,0.7\n",
            "column 'a_cpu', row 3: not a number: 'oops'",
        ),
        ("", "empty file"),
    ],
)
def test_bad_wide_files_name_file_column_and_row(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(IngestError, match=message) as err:
        read_wide_csv(path)
    assert str(path) in str(err.value)


# -- real excerpts ----------------------------------------------------------------------------


def test_nezha_pod_files_map_pods_to_services_on_one_grid() -> None:
    table = read_wide_csv([REAL / "nezha_pod_metric.csv", REAL / "nezha_pod_metric_basic.csv"])
    assert set(table.services()) == {"ts-contacts-service", "ts-basic-service"}
    assert any("epoch seconds" in n for n in table.notes)
    assert any("snapped" in n for n in table.notes)  # pods stamp ±1 s apart
    assert np.all(np.diff(table.times) == 60.0)
    host = [s for s in table.signals if s.metric.startswith("Node")]
    assert host and all(s.kind.host for s in host)
    assert sniff_metrics(REAL / "nezha_pod_metric.csv") == "wide"


def test_nab_file_whose_time_goes_back_is_sorted_and_noted() -> None:
    table = read_metrics(REAL / "nab_machine_temperature_excerpt.csv")
    assert np.all(np.diff(table.times) > 0)
    assert table.signals[0].service is None and table.columns == ["value"]
    assert any("backwards" in n for n in table.notes)


def test_petshop_csv_has_four_header_rows_and_keeps_node_names() -> None:
    table = read_petshop_csv(REAL / "petshop_issue_excerpt.csv")
    assert len(table.times) == 5 and table.times[0] == 1681855320.0
    assert set(table.services()) == {
        "PetSite",
        "PetSearch_AWS::ECS::Fargate",
        "DynamoDB_AWS::DynamoDB",
    }
    wide = table.wide()
    assert "PetSearch_AWS::ECS::Fargate_latency-Average" in wide.columns
    assert {c.rpartition("_")[0] for c in wide.columns if c != "time"} == set(table.services())
    kinds = {s.metric: s.kind for s in table.signals}
    assert (
        kinds["availability-Average"].kind == "errors" and kinds["availability-Average"].bad == -1
    )
    assert sniff_metrics(REAL / "petshop_issue_excerpt.csv") == "petshop"


def test_nezha_span_csv_reads_ns_epochs_parents_and_services() -> None:
    spans, notes = read_span_csv(REAL / "nezha_spans.csv")
    assert len(spans) == 15 and "span times: epoch ns" in notes
    assert set(spans["service"]) == {"ts-gateway-service", "ts-auth-service",
                                     "ts-verification-code-service"}  # fmt: skip
    assert (spans["parent"] == "").sum() == 1
    raw = pd.read_csv(REAL / "nezha_spans.csv")
    assert spans["dur_ms"].to_numpy() == pytest.approx(
        raw.sort_values("StartTimeUnixNano")["Duration"].to_numpy() / 1e3, abs=2e-3
    )  # Duration is in whole µs; end − start agrees to float precision


def test_span_files_overlapping_keep_each_span_once(tmp_path: Path) -> None:
    spans, notes = read_span_csv([REAL / "nezha_spans.csv", REAL / "nezha_spans.csv"])
    assert len(spans) == 15 and any("repeated span" in n for n in notes)


def test_nezha_logs_unwrap_docker_json_and_template_java_lines() -> None:
    logs, _ = read_logs(REAL / "nezha_logs.csv")
    assert len(logs) == 7 and logs["time"].iloc[0] > 1.6e9
    assert logs["template"].str.match(r"^(INFO|WARN|ERROR) \S+#\d+$").all()
    assert logs["trace"].nunique() == 1 and logs["service"].str.startswith("ts-").all()


def test_a_spliced_log_row_is_read_not_fatal() -> None:
    logs, notes = read_logs(REAL / "nezha_log_spliced.csv")
    assert len(logs) >= 4
    assert any("tolerant parser" in n for n in notes)


def test_jsonl_logs_with_template_ids(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    rows = [
        {"time": "2026-01-05T00:00:01Z", "t": 1.0, "service": "cart", "level": "ERROR",
         "template_id": "E1", "message": "boom", "trace_id": "ab", "span_id": "cd"},
        {"time": "2026-01-05T00:00:02Z", "t": 2.0, "service": "cart", "level": "INFO",
         "template_id": "I1", "message": "ok", "trace_id": "ef"},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    logs, _ = read_logs(path)
    assert list(logs["template"]) == ["ERROR E1", "INFO I1"]
    assert logs["time"].iloc[0] == pytest.approx(pd.Timestamp("2026-01-05T00:00:01Z").timestamp())
    path.write_text('{"time": 1}\nnot json\n')
    with pytest.raises(IngestError, match="row 2"):
        read_logs(path)
    # the write a killed writer cut: the last line, with no newline, is skipped and said
    whole = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(whole + json.dumps(rows[0])[:25])
    logs, notes = read_logs(path)
    assert len(logs) == 2 and any("line 3 is cut short" in n for n in notes)
    path.write_text(json.dumps(rows[0])[:25] + "\n" + whole)  # cut, then more: an error
    with pytest.raises(IngestError, match="row 1"):
        read_logs(path)


# -- formats the shared data lacks --------------------------------------------------------------


def test_long_csv_pods_become_services_and_repeats_merge(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    rows = []
    for i in range(6):
        for pod, v in (("cart-7d9f8b6c5d-x2x4z", 1.0), ("cart-7d9f8b6c5d-q9w8r", 3.0)):
            rows.append(
                {"timestamp": (T0 + 30 * i) * 1000, "pod": pod, "metric": "cpu", "value": v}
            )
        rows.append(
            {"timestamp": (T0 + 30 * i) * 1000, "pod": "redis-0", "metric": "mem", "value": 5}
        )
    rows.append(dict(rows[-1]))  # a repeated sample
    pd.DataFrame(rows).to_csv(path, index=False)
    table = read_long_csv(path)
    assert sorted(table.services()) == ["cart", "redis"]
    cart = [s for s in table.signals if s.service == "cart"]
    assert len(cart) == 2 and all("@" in s.wide_name for s in cart)  # one signal per pod
    assert any("milliseconds" in n for n in table.notes) and any(
        "repeated" in n for n in table.notes
    )
    assert sniff_metrics(path) == "long"


def write_prometheus(path: Path) -> None:
    def series(labels, values):
        return {"metric": labels, "values": [[T0 + 15 * i, str(v)] for i, v in enumerate(values)]}

    doc = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                series({"__name__": "http_requests_total", "service": "cart", "code": "200"},
                       [10, 20, 30, 5, 15]),
                series({"__name__": "container_memory_working_set_bytes",
                        "pod": "cart-7d9f8b6c5d-x2x4z"}, [1e8, 1e8, "NaN", 1.1e8, 1.2e8]),
            ],
        },
    }  # fmt: skip
    path.write_text(json.dumps(doc))


def test_prometheus_matrix_series_become_signals(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    write_prometheus(path)
    table = read_prometheus_json(path)
    assert table.services() == ["cart"]
    metrics = {s.metric: s for s in table.signals}
    assert "http_requests_total{code=200}" in metrics
    assert metrics["container_memory_working_set_bytes"].kind.kind == "memory"
    j = table.columns.index("cart:http_requests_total{code=200}")
    assert table.values[3, j] == pytest.approx(5 / 15)  # a counter reset: restarted from 0
    assert np.isnan(table.values[2, table.columns.index("cart:container_memory_working_set_bytes")])
    assert sniff_metrics(path) == "prometheus"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"status": "error", "error": "bad query"}, "bad query"),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, "'matrix'"),
        ({"data": {"result": [{"metric": {}, "values": [[1, "x"]]}]}}, "point 0"),
    ],
)
def test_bad_prometheus_responses_are_named(tmp_path: Path, doc: dict, message: str) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(IngestError, match=message):
        read_prometheus_json(path)


def otlp_doc() -> dict:
    def span(sid, parent, name, start, end, kind, attrs=(), code=0):
        return {"traceId": "t1", "spanId": sid, "parentSpanId": parent, "name": name,
                "kind": kind, "startTimeUnixNano": str(int(start * 1e9)),
                "endTimeUnixNano": str(int(end * 1e9)), "status": {"code": code},
                "attributes": [{"key": k, "value": {"stringValue": v}}
                               for k, v in attrs]}  # fmt: skip

    def resource(service, spans):
        attrs = [{"key": "service.name", "value": {"stringValue": service}}]
        return {"resource": {"attributes": attrs}, "scopeSpans": [{"spans": spans}]}

    return {
        "resourceSpans": [
            resource("frontend", [span("a", "", "GET /", T0, T0 + 0.3, 2),
                                  span("b", "a", "GET cart", T0 + 0.01, T0 + 0.2, 3,
                                       [("peer.service", "cart")])]),
            resource("cart", [span("c", "b", "GET /cart", T0 + 0.02, T0 + 0.19, 2, code=2)]),
        ]
    }  # fmt: skip


def test_otlp_json_spans(tmp_path: Path) -> None:
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(otlp_doc()))
    spans, notes = read_traces(path)
    assert "epoch nanoseconds" in notes[0]
    assert list(spans["span"]) == ["a", "b", "c"]
    row = spans.set_index("span")
    assert row.loc["b", "kind"] == "client" and row.loc["b", "peer"] == "cart"
    assert row.loc["c", "error"] == 1.0 and row.loc["a", "parent"] == ""
    assert row.loc["a", "dur_ms"] == pytest.approx(300.0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": []}]}))
    with pytest.raises(IngestError, match=r"service\.name"):
        read_otlp_json(bad)


def test_gzipped_files_read_too(tmp_path: Path) -> None:
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("time,a_cpu\n1,1\n2,2\n")
    assert read_metrics(path).values.shape == (2, 1)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        read_metrics(tmp_path / "nope.csv")
