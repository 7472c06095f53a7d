"""Bad inputs to `firebreak incidents add|similar|list|eval` and `remedy-prior`: part of the
corpus in bad_input_corpus.py, in a file of its own to keep each under 500 lines."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from bad_input_corpus import Case, _file, _folder, _good
from bad_input_ingest import _table


def _library(m: Path, name: str = "lib.sqlite", *, version: str | None = None) -> Path:
    """A library holding one incident of the corpus table (optionally re-stamped with
    another signature version)."""
    import pandas as pd

    from detectors.memory.library import Incident, IncidentLibrary
    from detectors.memory.signature import signature

    path = m / name
    if not path.exists():
        table = pd.read_csv(_table(m))
        sig = signature(table, 3600.0)
        with IncidentLibrary.open(path, create=True) as lib:
            lib.add([Incident("first", "corpus", "table.csv", 3600.0, "cpu", "cart", sig)])
    if version is not None:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'signature_version'", (version,))
        conn.close()
    return path


def _run_dir(m: Path, labels: object) -> Path:
    """A run directory: the corpus table as a long metrics.parquet, and a labels.json."""
    import pandas as pd

    run = m / "run"
    if not run.exists():
        run.mkdir()
        wide = pd.read_csv(_table(m))
        long = wide.melt(id_vars="time", var_name="signal", value_name="value")
        parts = long["signal"].str.rsplit("_", n=1, expand=True)
        long = long.assign(service=parts[0], metric=parts[1])[
            ["time", "service", "metric", "value"]
        ]
        (run / "metrics.parquet").mkdir()
        long.to_parquet(run / "metrics.parquet" / "part-000000.parquet")
    (run / "labels.json").write_text(labels if isinstance(labels, str) else json.dumps(labels))
    return run


ONE_FAULT = {"faults": [{"kind": "cpu_hog", "target": "cart", "start": 3600.0}]}


def memory_cases() -> list[Case]:
    """Every bad input names the file, the flag or the value at fault."""
    t, lib = _table, _library

    def add(m: Path, *more: str) -> list[str]:
        return ["incidents", "add", str(t(m)), "--library", str(m / "new.sqlite"), *more]

    ok = ("--at", "3600", "--kind", "cpu", "--root", "cart")
    c: list[tuple[str, Callable[[Path, Path], list[str]], tuple[str, ...]]] = [
        ("incidents:no-subcommand", lambda m, o: ["incidents"], ("incidents",)),
        ("incidents:missing-source", lambda m, o: ["incidents", "add", str(m / "no.csv"),
                                                   "--library", str(m / "l.sqlite"), *ok],
         ("no.csv",)),
        ("incidents:empty-source", lambda m, o: ["incidents", "add", str(_file(m, "e.csv", "")),
                                                 "--library", str(m / "l.sqlite"), *ok],
         ("e.csv", "empty")),
        ("incidents:all-nan", lambda m, o: ["incidents", "add", str(t(m, "nan.csv", values="nan")),
                                            "--library", str(m / "l.sqlite"), *ok], ("nan.csv",)),
        ("incidents:at-missing", lambda m, o: add(m, "--kind", "cpu", "--root", "cart"), ("--at",)),
        ("incidents:at-words", lambda m, o: add(m, "--at", "yesterday", "--kind", "cpu",
                                                "--root", "cart"), ("--at", "yesterday")),
        ("incidents:at-nan", lambda m, o: add(m, "--at", "nan", "--kind", "cpu", "--root", "cart"),
         ("--at", "nan")),
        ("incidents:at-outside", lambda m, o: add(m, "--at", "1e9", "--kind", "cpu", "--root",
                                                  "cart"), ("--at", "outside", "table.csv")),
        ("incidents:kind-missing", lambda m, o: add(m, "--at", "3600", "--root", "cart"),
         ("--kind",)),
        ("incidents:kind-empty", lambda m, o: add(m, "--at", "3600", "--kind", " ", "--root",
                                                  "cart"), ("--kind",)),
        ("incidents:action-outcome", lambda m, o: add(m, *ok, "--action", "restart=maybe"),
         ("--action", "maybe")),
        ("incidents:action-no-name", lambda m, o: add(m, *ok, "--action", "=worked"),
         ("--action", "=worked")),
        ("incidents:library-is-dir", lambda m, o: ["incidents", "add", str(t(m)), "--library",
                                                   str(_folder(m, "libdir")), *ok], ("libdir",
                                                                                     "directory")),
        ("incidents:library-folder-missing", lambda m, o: ["incidents", "add", str(t(m)),
                                                           "--library", str(m / "no" / "l.sqlite"),
                                                           *ok], ("l.sqlite", "does not exist")),
        ("incidents:library-junk", lambda m, o: ["incidents", "list", "--library",
                                                 str(_file(m, "junk.sqlite", "x" * 4000))],
         ("junk.sqlite", "not an incident library")),
        ("incidents:library-missing", lambda m, o: ["incidents", "list", "--library",
                                                    str(m / "none.sqlite")], ("none.sqlite",)),
        ("incidents:library-version", lambda m, o: ["incidents", "similar", str(t(m)), "--library",
                                                    str(lib(m, version="sig-0")), "--at", "3600"],
         ("lib.sqlite", "signature_version", "sig-0")),
        ("incidents:add-to-other-version", lambda m, o: ["incidents", "add", str(t(m)),
                                                         "--library", str(lib(m, version="sig-0")),
                                                         *ok], ("lib.sqlite", "sig-0")),
        ("incidents:name-taken", lambda m, o: ["incidents", "add", str(t(m)), "--library",
                                               str(lib(m)), *ok, "--name", "first"],
         ("lib.sqlite", "first", "already")),
        ("incidents:similar-top-zero", lambda m, o: ["incidents", "similar", str(t(m)),
                                                     "--library", str(lib(m)), "--at", "3600",
                                                     "--top", "0"], ("--top", "0")),
        ("incidents:similar-unknown-nan", lambda m, o: ["incidents", "similar", str(t(m)),
                                                        "--library", str(lib(m)), "--at", "3600",
                                                        "--unknown-distance", "nan"],
         ("--unknown-distance", "nan")),
        ("incidents:eval-k-zero", lambda m, o: ["incidents", "eval", "--library", str(lib(m)),
                                                "--k", "0"], ("--k", "0")),
        ("incidents:eval-episodes-words", lambda m, o: ["incidents", "eval", "--library",
                                                        str(lib(m)), "--episodes", "many"],
         ("--episodes", "many")),
        ("incidents:eval-too-few", lambda m, o: ["incidents", "eval", "--library", str(lib(m))],
         ("lib.sqlite", "at least 2")),
        ("incidents:eval-both-thresholds", lambda m, o: ["incidents", "eval", "--library",
                                                         str(lib(m)), "--open-set", "fit",
                                                         "--unknown-distance", "1"],
         ("--unknown-distance", "--open-set")),
        ("incidents:eval-test-missing", lambda m, o: ["incidents", "eval", "--library",
                                                      str(lib(m)), "--test", str(m / "t.sqlite")],
         ("t.sqlite",)),
        ("incidents:from-labels-on-table", lambda m, o: add(m, "--from-labels"),
         ("labels.json",)),
        ("incidents:labels-bad-json", lambda m, o: ["incidents", "add", str(_run_dir(m, "{")),
                                                    "--library", str(m / "l.sqlite"),
                                                    "--from-labels"], ("labels.json",)),
        ("incidents:labels-fault-index", lambda m, o: ["incidents", "add",
                                                       str(_run_dir(m, ONE_FAULT)), "--library",
                                                       str(m / "l.sqlite"), "--from-labels",
                                                       "--fault", "3"], ("labels.json", "--fault",
                                                                         "3")),
        ("incidents:fault-negative", lambda m, o: ["incidents", "add", str(_run_dir(m, ONE_FAULT)),
                                                   "--library", str(m / "l.sqlite"),
                                                   "--from-labels", "--fault", "-1"],
         ("--fault", "-1")),
        ("incidents:traces-missing", lambda m, o: add(m, *ok, "--traces", str(m / "t.csv")),
         ("t.csv",)),
        ("rehearse:incidents-missing", lambda m, o: ["rehearse", str(_good(m)), "--out", str(o),
                                                     "--incidents", str(m / "none.sqlite")],
         ("none.sqlite", "no such incident library")),
        ("rehearse:incidents-version", lambda m, o: ["rehearse", str(_good(m)), "--out", str(o),
                                                     "--incidents", str(lib(m, version="sig-0"))],
         ("lib.sqlite", "sig-0")),
        ("incidents:topology-missing", lambda m, o: add(m, *ok, "--topology", str(m / "g.yaml")),
         ("g.yaml",)),
        # remedy-prior (checked before any rehearsal starts)
        ("remedy-prior:no-subcommand", lambda m, o: ["remedy-prior"], ("learn|compare",)),
        ("remedy-prior:library-exists", lambda m, o: ["remedy-prior", "learn", "--library",
                                                      str(lib(m))], ("lib.sqlite", "--append")),
        ("remedy-prior:seeds-zero", lambda m, o: ["remedy-prior", "learn", "--library",
                                                  str(m / "n.sqlite"), "--seeds", "0"],
         ("--seeds", "0")),
        ("remedy-prior:scenario-unknown", lambda m, o: ["remedy-prior", "learn", "--library",
                                                        str(m / "n.sqlite"), "--scenarios",
                                                        "narnia"], ("--scenarios", "narnia")),
        ("remedy-prior:library-missing", lambda m, o: ["remedy-prior", "compare", "--library",
                                                       str(m / "none.sqlite"), "--out", str(o)],
         ("none.sqlite",)),
        ("remedy-prior:no-decisions", lambda m, o: ["remedy-prior", "compare", "--library",
                                                    str(lib(m)), "--out", str(o)],
         ("lib.sqlite", "no decision-time incidents")),
        ("remedy-prior:threshold-nan", lambda m, o: ["remedy-prior", "compare", "--library",
                                                     str(lib(m)), "--threshold", "nan", "--out",
                                                     str(o)], ("--threshold", "nan")),
    ]  # fmt: skip
    return [Case(cid, argv, expect) for cid, argv, expect in c]
