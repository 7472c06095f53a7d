"""Bad inputs to production-like telemetry (the scenario's `telemetry.mode` and
`telemetry.production`), to import-traces' scenario flags and to calibrate: part of the corpus in
bad_input_corpus.py, in a file of its own to keep each under 500 lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bad_input_corpus import Case, _file, _scenario_file, _set, valid_scenario

PROD = "telemetry.production"
# (id, dotted path, bad value, fragments of the message)
TELEMETRY_MUTATIONS: list[tuple[str, str, Any, tuple[str, ...]]] = [
    ("telemetry-mode-unknown", "telemetry", {"mode": "realistic"},
     ("telemetry.mode", "realistic")),
    ("telemetry-mode-number", "telemetry", {"mode": 1}, ("telemetry.mode",)),
    ("scrape-interval-zero", "telemetry", {"production": {"scrape_interval_s": 0}},
     (f"{PROD}.scrape_interval_s",)),
    ("scrape-interval-words", "telemetry", {"production": {"scrape_interval_s": "often"}},
     (f"{PROD}.scrape_interval_s", "often")),
    ("scrape-jitter-past-half", "telemetry",
     {"production": {"scrape_interval_s": "10s", "scrape_jitter_s": "6s"}},
     (PROD, "scrape_jitter_s", "half")),
    ("rate-window-one-scrape", "telemetry", {"production": {"rate_window_s": "20s"}},
     (PROD, "rate_window_s", "two scrapes")),
    ("missing-scrapes-most", "telemetry", {"production": {"missing_scrapes": 0.9}},
     (f"{PROD}.missing_scrapes", "0.9")),
    ("buckets-decreasing", "telemetry", {"production": {"buckets_s": [0.5, 0.1, 1]}},
     (f"{PROD}.buckets_s", "increasing")),
    ("buckets-negative", "telemetry", {"production": {"buckets_s": [-1, 1]}},
     (f"{PROD}.buckets_s",)),
    ("buckets-one", "telemetry", {"production": {"buckets_s": [1]}}, (f"{PROD}.buckets_s",)),
    ("gc-pause-nan", "telemetry", {"production": {"gc_pause_ms": float("nan")}},
     (f"{PROD}.gc_pause_ms",)),
    ("deploys-negative", "telemetry",
     {"production": {"confounders": {"deploys_per_day": -1}}},
     (f"{PROD}.confounders.deploys_per_day", "-1")),
    ("confounder-unknown", "telemetry", {"production": {"confounders": {"meteors": 1}}},
     (f"{PROD}.confounders.meteors",)),
    ("production-unknown-key", "telemetry", {"production": {"scrape": 15}},
     (f"{PROD}.scrape",)),
]  # fmt: skip
# runs too short for one rate() window: refused when the run starts
RUN_ONLY: list[tuple[str, str, Any, tuple[str, ...]]] = [
    ("production-shorter-than-a-window", "duration", "50s", ("duration", "50s", "rate_window_s")),
]

SPAN = {"traceID": "t", "spanID": "a", "operationName": "op", "startTime": 1,
        "duration": 1000, "processID": "p1", "references": []}  # fmt: skip


def _traces(m: Path) -> Path:
    """A valid one-trace Jaeger file."""
    doc = {"data": [{"traceID": "t", "spans": [SPAN], "processes": {"p1": {"serviceName": "a"}}}]}
    return _file(m, "good-traces.json", json.dumps(doc))


def _import(*flags: str) -> Callable[[Path, Path], list[str]]:
    return lambda m, o: ["import-traces", str(_traces(m)), "-o", str(m / "s.yaml"), *flags]


IMPORT_FLAGS: list[tuple[str, Callable[[Path, Path], list[str]], tuple[str, ...]]] = [
    ("import:duration-zero", _import("--duration", "0"), ("--duration", "0")),
    ("import:duration-words", _import("--duration", "a while"), ("--duration", "a while")),
    ("import:duration-negative", _import("--duration=-5m"), ("--duration", "-5m")),
    ("import:duration-nan", _import("--duration", "nan"), ("--duration", "nan")),
    ("import:rate-zero", _import("--rate", "0"), ("--rate", "0")),
    ("import:rate-inf", _import("--rate", "inf"), ("--rate", "inf")),
    ("import:rate-words", _import("--rate", "busy"), ("--rate", "busy")),
    ("import:sampled-zero", _import("--sampled", "0"), ("--sampled", "0")),
    ("import:sampled-over-one", _import("--sampled", "1.5"), ("--sampled", "1.5")),
    ("import:sampled-nan", _import("--sampled", "nan"), ("--sampled", "nan")),
    ("import:seed-negative", _import("--seed", "-1"), ("--seed", "-1")),
    ("import:seed-float", _import("--seed", "1.5"), ("--seed", "1.5")),
    ("import:out-is-a-folder", lambda m, o: ["import-traces", str(_traces(m)), "-o", str(m)],
     ("is a directory",)),
]  # fmt: skip


def _day(m: Path, metric: str | None = None) -> Path:
    """A telemetry folder (Nezha layout) with one trace; `metric`: a pod metric CSV's text."""
    root = m / "day"
    (root / "trace").mkdir(parents=True, exist_ok=True)
    (root / "trace" / "t.csv").write_text(
        "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano\n"
        "t1,a,root,gw-6f6cfc45b-h5m2n,/,1674982159000000000,1674982159020000000\n"
    )
    if metric is not None:
        (root / "metric").mkdir(exist_ok=True)
        (root / "metric" / "gw-6f6cfc45b-h5m2n_metric.csv").write_text(metric)
    return root


def _cal(*flags: str, day=_day) -> Callable[[Path, Path], list[str]]:
    return lambda m, o: ["calibrate", str(day(m)), "-o", str(m / "c.yaml"), *flags]


CALIBRATE: list[tuple[str, Callable[[Path, Path], list[str]], tuple[str, ...]]] = [
    ("calibrate:missing-folder", lambda m, o: ["calibrate", str(m / "nope"), "-o",
                                               str(m / "c.yaml")], ("nope",)),
    ("calibrate:empty-folder", lambda m, o: ["calibrate", str(_file(m, "x/.keep", "").parent),
                                             "-o", str(m / "c.yaml")], ("x",)),
    ("calibrate:traces-not-csv", lambda m, o: ["calibrate", str(_file(m, "b/trace/t.csv",
                                               bytes(range(256)) * 4).parent.parent), "-o",
                                               str(m / "c.yaml")], ("t.csv",)),
    ("calibrate:metric-no-cpu", _cal(day=lambda m: _day(m, "Time,PodName\n1,gw\n")),
     ("gw-6f6cfc45b-h5m2n_metric.csv", "CpuUsage(m)")),
    ("calibrate:duration-zero", _cal("--duration", "0"), ("--duration", "0")),
    ("calibrate:seed-negative", _cal("--seed", "-2"), ("--seed", "-2")),
    ("calibrate:check-missing", _cal("--check", "/nonexistent/held-out"),
     ("--check", "/nonexistent/held-out")),
    ("calibrate:out-folder-missing", lambda m, o: ["calibrate", str(_day(m)), "-o",
                                                   str(m / "no" / "c.yaml")], ("no",)),
]  # fmt: skip


def observe_cases() -> list[Case]:
    """Telemetry settings under validate and run; import-traces' scenario flags."""
    cases = []
    commands: dict[str, Callable[[Path, Path], list[str]]] = {
        "validate": lambda s, out: ["validate", str(s)],
        "run": lambda s, out: ["run", str(s), "--out", str(out), "--quiet"],
    }
    for cid, path, value, expect in TELEMETRY_MUTATIONS:
        for cmd, build in commands.items():

            def argv(m: Path, out: Path, cid=cid, path=path, value=value, build=build) -> list:
                return build(_scenario_file(m, cid, _set(valid_scenario(), path, value)), out)

            cases.append(Case(f"{cmd}:{cid}", argv, expect))
    for cid, path, value, expect in RUN_ONLY:

        def short(m: Path, out: Path, path=path, value=value, cid=cid) -> list:
            doc = _set(_set(valid_scenario(), path, value), "faults", [])
            doc["telemetry"] = {"mode": "production"}
            return commands["run"](_scenario_file(m, cid, doc), out)

        cases.append(Case(f"run:{cid}", short, expect))
    extra = IMPORT_FLAGS + CALIBRATE
    return cases + [Case(cid, argv, expect) for cid, argv, expect in extra]
