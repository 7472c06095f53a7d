"""Bad inputs to the commands that read recorded telemetry (detect, rca, real-bench,
no-fault-day): part of
the corpus in bad_input_corpus.py, in a file of its own to keep each under 500 lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bad_input_corpus import Case, _file, _folder, _occupied


def _table(m: Path, name: str = "table.csv", *, values: str = "normal") -> Path:
    """A recorded metrics table (30 s rows, two services) in the materials folder."""
    import numpy as np

    path = m / "tables" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["time,cart_latency,front_cpu"]
    for i in range(240):
        if values == "nan":
            rows.append(f"{i * 30},,")
        else:
            rows.append(f"{i * 30},{0.1 + 0.01 * rng.standard_normal():.5f},{0.5:.3f}")
    path.write_text("\n".join(rows) + "\n")
    return path


NOISE = bytes(range(256)) * 8  # not text at all
WORDS = "time,x\n0,a\n30,b\n"  # a table whose only signal is words


def _rates(m: Path, scale: float = 1.0) -> Path:
    """A day of a rate series (`timestamp,value`, 5-minute steps) for no-fault-day."""
    path = m / "tables" / "rates.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["timestamp,value"] + [f"{i * 300},{scale * (50 + i % 12)}" for i in range(288)]
    path.write_text("\n".join(rows) + "\n")
    return path


def ingest_cases() -> list[Case]:
    """Bad inputs to the commands that read recorded telemetry: detect, rca, real-bench."""
    t = _table
    c: list[tuple[str, Callable[[Path, Path], list[str]], tuple[str, ...]]] = [
        ("detect:missing-file", lambda m, o: ["detect", str(m / "no.csv"), "--out", str(o)],
         ("no.csv",)),
        ("detect:empty-file", lambda m, o: ["detect", str(_file(m, "e.csv", "")), "--out",
                                            str(o)], ("e.csv", "empty")),
        ("detect:binary-file", lambda m, o: ["detect", str(_file(m, "b.csv", NOISE)), "--out",
                                             str(o)], ("b.csv",)),
        ("detect:all-nan", lambda m, o: ["detect", str(t(m, "nan.csv", values="nan")), "--out",
                                         str(o)], ("nan.csv", "no numeric signal")),
        ("detect:text-values", lambda m, o: ["detect", str(_file(m, "w.csv", WORDS)), "--out",
                                             str(o)], ("w.csv",)),
        ("detect:time-column-unknown", lambda m, o: ["detect", str(t(m)), "--time-column", "when",
                                                     "--out", str(o)], ("table.csv", "when")),
        ("detect:format-unknown", lambda m, o: ["detect", str(t(m)), "--format", "xml", "--out",
                                                str(o)], ("--format", "xml")),
        ("detect:z-nan", lambda m, o: ["detect", str(t(m)), "--z", "nan", "--out", str(o)],
         ("--z", "nan")),
        ("detect:z-negative", lambda m, o: ["detect", str(t(m)), "--z", "-1", "--out", str(o)],
         ("--z", "-1")),
        ("detect:persist-zero", lambda m, o: ["detect", str(t(m)), "--persist", "0", "--out",
                                              str(o)], ("--persist", "0")),
        ("detect:window-tiny", lambda m, o: ["detect", str(t(m)), "--window", "2", "--out",
                                             str(o)], ("--window", "2")),
        ("detect:out-occupied", lambda m, o: ["detect", str(t(m)), "--out", str(_occupied(o))],
         ("--out", "--force")),
        ("rca:missing-file", lambda m, o: ["rca", str(m / "no.csv"), "--at", "100"], ("no.csv",)),
        ("rca:all-nan", lambda m, o: ["rca", str(t(m, "nan.csv", values="nan")), "--at", "100"],
         ("nan.csv", "no numeric")),
        ("rca:at-missing", lambda m, o: ["rca", str(t(m))], ("--at",)),
        ("rca:at-words", lambda m, o: ["rca", str(t(m)), "--at", "yesterday"], ("yesterday",)),
        ("rca:at-nan", lambda m, o: ["rca", str(t(m)), "--at", "nan"], ("nan",)),
        ("rca:at-outside", lambda m, o: ["rca", str(t(m)), "--at", "1e12"], ("outside",)),
        ("rca:top-zero", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--top", "0"],
         ("--top", "0")),
        ("rca:before-negative", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--before", "-5"],
         ("--before", "-5")),
        ("rca:after-inf", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--after", "inf"],
         ("--after", "inf")),
        ("rca:method-unknown", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--method",
                                             "tarot"], ("tarot",)),
        ("rca:target-unknown", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--target", "zz"],
         ("--target", "zz")),
        ("rca:traces-missing", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--traces",
                                             str(m / "spans.csv")], ("spans.csv",)),
        ("rca:logs-binary", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--logs",
                                          str(_file(m, "l.csv", bytes(range(256)) * 8))],
         ("l.csv",)),
        ("rca:topology-not-square", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--topology",
                                                  str(t(m))], ("table.csv", "adjacency")),
        ("rca:normal-missing", lambda m, o: ["rca", str(t(m)), "--normal", str(m / "calm.csv")],
         ("calm.csv",)),
        ("rca:json-no-folder", lambda m, o: ["rca", str(t(m)), "--at", "3600", "--json",
                                             str(m / "nowhere" / "r.json")],
         ("--json", "nowhere")),
        ("real-bench:missing-dir", lambda m, o: ["real-bench", str(m / "nodata"), "--out", str(o)],
         ("nodata",)),
        ("real-bench:no-dataset", lambda m, o: ["real-bench", str(_folder(m, "empty")), "--out",
                                                str(o)], ("empty", "no known dataset")),
        ("real-bench:limit-zero", lambda m, o: ["real-bench", str(_folder(m, "empty")), "--limit",
                                                "0", "--out", str(o)], ("--limit",)),
        ("real-bench:method-unknown", lambda m, o: ["real-bench", str(_folder(m, "empty")),
                                                    "--methods", "magic", "--out", str(o)],
         ("magic",)),
        ("real-bench:dataset-unknown", lambda m, o: ["real-bench", str(_folder(m, "empty")),
                                                     "--datasets", "mars", "--out", str(o)],
         ("mars",)),
        ("no-fault-day:missing-series", lambda m, o: ["no-fault-day", str(m / "rate.csv"), "--out",
                                                      str(o)], ("rate.csv",)),
        ("no-fault-day:hours-zero", lambda m, o: ["no-fault-day", str(_rates(m)), "--hours", "0",
                                                  "--out", str(o)], ("--hours", "0")),
        ("no-fault-day:hours-nan", lambda m, o: ["no-fault-day", str(_rates(m)), "--hours", "nan",
                                                 "--out", str(o)], ("--hours", "nan")),
        ("no-fault-day:hours-huge", lambda m, o: ["no-fault-day", str(_rates(m)), "--hours",
                                                  "1e5", "--out", str(o)], ("--hours", "100000")),
        ("no-fault-day:load-negative", lambda m, o: ["no-fault-day", str(_rates(m)), "--load",
                                                     "-1", "--out", str(o)], ("--load", "-1")),
        ("no-fault-day:provision-unknown", lambda m, o: ["no-fault-day", str(_rates(m)),
                                                         "--provision", "max", "--out", str(o)],
         ("--provision", "max")),
        ("no-fault-day:seed-negative", lambda m, o: ["no-fault-day", str(_rates(m)), "--seed", "-1",
                                                     "--out", str(o)], ("--seed", "-1")),
        ("no-fault-day:negative-rates", lambda m, o: ["no-fault-day", str(_rates(m, -1.0)), "--out",
                                                      str(o)], ("rates.csv", "negative")),
        ("no-fault-day:out-occupied", lambda m, o: ["no-fault-day", str(_rates(m)), "--out",
                                                    str(_occupied(o))], ("--out", "--force")),
    ]  # fmt: skip
    return [Case(cid, argv, expect) for cid, argv, expect in c]
