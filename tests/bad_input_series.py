"""Bad inputs to the commands that read a rate series (forecast, capacity-study --trace): part
of the corpus in bad_input_corpus.py, in a file of its own to keep each under 500 lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bad_input_corpus import Case, _file, _occupied

DAY_5MIN = 288  # five-minute steps in a day


def _series(
    m: Path,
    name: str = "rate.csv",
    *,
    rows: int = 3 * DAY_5MIN,
    header: str = "timestamp,value",
    step: int = 300,
    value: Callable[[int], object] | None = None,
    time: Callable[[int], object] | None = None,
) -> Path:
    """A rate series CSV (a daily cycle, five-minute steps) with optional bad cells."""
    path = m / "series" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for i in range(rows):
        t = time(i) if time else 1_400_000_000 + i * step
        v = value(i) if value else f"{50 + 20 * ((i % DAY_5MIN) / DAY_5MIN):.3f}"
        lines.append(f"{t},{v}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _cell(bad_row: int, bad: object) -> Callable[[int], object]:
    """A value column that is fine except on one row."""
    return lambda i: bad if i == bad_row else 42


NOISE = bytes(range(256)) * 8


def _fc(*extra: str) -> Callable[[Path, Path], list[str]]:
    """`forecast` of the good series with extra flags."""
    return lambda m, o: ["forecast", str(_series(m)), *extra, "--out", str(o)]


def forecast_cases() -> list[Case]:
    """Every way a rate series or a flag of `firebreak forecast` can be wrong."""
    s = _series
    h = ("--horizon", "12")
    c: list[tuple[str, Callable[[Path, Path], list[str]], tuple[str, ...]]] = [
        ("forecast:missing-file", lambda m, o: ["forecast", str(m / "no.csv"), *h, "--out",
                                                str(o)], ("no.csv", "no such file")),
        ("forecast:directory", lambda m, o: ["forecast", str(m), *h, "--out", str(o)],
         ("materials", "directory")),
        ("forecast:empty-file", lambda m, o: ["forecast", str(_file(m, "e.csv", "")), *h,
                                              "--out", str(o)], ("e.csv", "empty")),
        ("forecast:binary-file", lambda m, o: ["forecast", str(_file(m, "b.csv", NOISE)), *h,
                                               "--out", str(o)], ("b.csv",)),
        ("forecast:header-only", lambda m, o: ["forecast", str(s(m, "h.csv", rows=0)), *h,
                                               "--out", str(o)], ("h.csv", "no rows")),
        ("forecast:no-time-column", lambda m, o: ["forecast", str(s(m, "nt.csv",
                                                                    header="a,value")),
                                                  *h, "--out", str(o)],
         ("nt.csv", "no time column", "--time-column")),
        ("forecast:time-column-unknown", lambda m, o: ["forecast", str(s(m)), *h,
                                                       "--time-column", "when", "--out", str(o)],
         ("rate.csv", "'when'", "--time-column")),
        ("forecast:value-column-unknown", lambda m, o: ["forecast", str(s(m)), *h,
                                                        "--value-column", "rps", "--out", str(o)],
         ("rate.csv", "'rps'", "--value-column")),
        ("forecast:value-column-ambiguous", lambda m, o: [
            "forecast", str(s(m, "two.csv", header="time,a,b", value=lambda i: "1,2")), *h,
            "--out", str(o)], ("two.csv", "--value-column")),
        ("forecast:value-words", lambda m, o: ["forecast", str(s(m, "w.csv",
                                                                 value=_cell(7, "lots"))),
                                               *h, "--out", str(o)],
         ("w.csv", "'value'", "line 9", "lots")),
        ("forecast:value-nan", lambda m, o: ["forecast", str(s(m, "n.csv", value=_cell(3, "nan"))),
                                             *h, "--out", str(o)], ("n.csv", "line 5", "nan")),
        ("forecast:value-inf", lambda m, o: ["forecast", str(s(m, "i.csv", value=_cell(3, "inf"))),
                                             *h, "--out", str(o)], ("i.csv", "line 5", "inf")),
        ("forecast:value-empty", lambda m, o: ["forecast", str(s(m, "x.csv", value=_cell(4, ""))),
                                               *h, "--out", str(o)], ("x.csv", "line 6", "empty")),
        ("forecast:values-negative", lambda m, o: ["forecast", str(s(m, "neg.csv",
                                                                     value=lambda i: -5)),
                                                   *h, "--out", str(o)],
         ("neg.csv", "'value'", "-5", "negative")),
        ("forecast:one-negative", lambda m, o: ["forecast", str(s(m, "n1.csv",
                                                                  value=_cell(100, "-0.5"))),
                                                *h, "--out", str(o)],
         ("n1.csv", "line 102", "-0.5", "negative")),
        ("forecast:time-words", lambda m, o: [
            "forecast", str(s(m, "t.csv", time=lambda i: "soon" if i == 9 else 1e9 + 300 * i)),
            *h, "--out", str(o)], ("t.csv", "'timestamp'", "line 11", "soon")),
        ("forecast:times-backwards", lambda m, o: [
            "forecast", str(s(m, "bk.csv", time=lambda i: 1e9 - 300 * i)), *h, "--out", str(o)],
         ("bk.csv", "line 3", "increase")),
        ("forecast:times-repeat", lambda m, o: [
            "forecast", str(s(m, "rp.csv", time=lambda i: 1e9 + 300 * (i - (i == 50)))), *h,
            "--out", str(o)], ("rp.csv", "line 52", "increase")),
        ("forecast:times-irregular", lambda m, o: [
            "forecast", str(s(m, "ir.csv", time=lambda i: 1e9 + 300 * i + 700 * (i >= 60))), *h,
            "--out", str(o)], ("ir.csv", "line 62", "1000")),
        ("forecast:step-not-a-day-divisor", lambda m, o: ["forecast", str(s(m, "st.csv",
                                                                            step=7)),
                                                          *h, "--out", str(o)],
         ("st.csv", "7 s", "day")),
        ("forecast:too-short", lambda m, o: ["forecast", str(s(m, "sh.csv", rows=10)), *h,
                                             "--out", str(o)],
         ("sh.csv", "10 rows", "seasonal-profile")),
        ("forecast:too-short-for-mstl", lambda m, o: [  # exactly two days crashed statsmodels
            "forecast", str(s(m, "sm.csv", rows=2 * DAY_5MIN)), *h, "--model", "mstl", "--out",
            str(o)], ("sm.csv", "mstl", "too short")),
        ("forecast:all-zero", lambda m, o: ["forecast", str(s(m, "z.csv", value=lambda i: 0)),
                                            *h, "--out", str(o)], ("z.csv", "every rate is 0")),
        ("forecast:too-short-to-backtest", lambda m, o: ["forecast", str(s(m, "sb.csv")),
                                                         "--backtest"],
         ("sb.csv", "too few to backtest")),
        ("forecast:horizon-missing", _fc(), ("--horizon", "required")),
        ("forecast:horizon-zero", _fc("--horizon", "0"), ("--horizon", "'0'")),
        ("forecast:horizon-negative", _fc("--horizon", "-3"), ("--horizon", "-3")),
        ("forecast:horizon-huge", _fc("--horizon", "100001"), ("--horizon", "100001")),
        ("forecast:horizon-absurd", _fc("--horizon", "1000000000000"),
         ("--horizon", "1000000000000")),
        ("forecast:horizon-words", _fc("--horizon", "a day"), ("--horizon", "a day")),
        ("forecast:horizon-float", _fc("--horizon", "1e9"), ("--horizon", "1e9")),
        ("forecast:level-zero", _fc(*h, "--level", "0"), ("--level", "'0'")),
        ("forecast:level-one", _fc(*h, "--level", "1"), ("--level", "'1'")),
        ("forecast:level-percent", _fc(*h, "--level", "90"), ("--level", "90")),
        ("forecast:level-nan", _fc(*h, "--level", "nan"), ("--level", "nan")),
        ("forecast:level-negative", _fc(*h, "--level", "-0.9"), ("--level", "-0.9")),
        ("forecast:level-backtest", lambda m, o: ["forecast", str(s(m)), "--backtest", "--level",
                                                  "1.5"], ("--level", "1.5")),
        ("forecast:model-unknown", _fc(*h, "--model", "oracle"), ("--model", "oracle")),
        ("forecast:out-under-a-file", lambda m, o: ["forecast", str(s(m)), *h, "--out",
                                                    str(_file(m, "f.txt", "x") / "sub")],
         ("--out", "f.txt")),
        ("forecast:out-occupied", lambda m, o: ["forecast", str(s(m)), *h, "--out",
                                                str(_occupied(o))], ("--out", "--force")),
        ("forecast:out-empty", lambda m, o: ["forecast", str(s(m)), *h, "--out", ""],
         ("--out", "empty")),
    ]  # fmt: skip
    return [Case(cid, argv, expect) for cid, argv, expect in c]


def _cs(*extra: str) -> Callable[[Path, Path], list[str]]:
    """`capacity-study --trace` of the good series (three days) with extra flags."""
    return lambda m, o: ["capacity-study", "--trace", str(_series(m)), "--seeds", "1", *extra,
                         "--out", str(o)]  # fmt: skip


def trace_cases() -> list[Case]:
    """`capacity-study --trace` and its flags: the replayed series is checked before a run."""
    s = _series
    c: list[tuple[str, Callable[[Path, Path], list[str]], tuple[str, ...]]] = [
        ("capacity:trace-missing", lambda m, o: ["capacity-study", "--trace", str(m / "no.csv"),
                                                 "--out", str(o)], ("no.csv", "not found")),
        ("capacity:trace-directory", lambda m, o: ["capacity-study", "--trace", str(m), "--out",
                                                   str(o)], ("materials", "not a file")),
        ("capacity:trace-empty", lambda m, o: ["capacity-study", "--trace",
                                               str(_file(m, "e.csv", "")), "--out", str(o)],
         ("e.csv",)),
        ("capacity:trace-binary", lambda m, o: ["capacity-study", "--trace",
                                                str(_file(m, "b.csv", NOISE)), "--out", str(o)],
         ("b.csv",)),
        ("capacity:trace-no-time-column", lambda m, o: [
            "capacity-study", "--trace", str(s(m, "nt.csv", header="a,value")), "--out", str(o)],
         ("nt.csv", "time_column")),
        ("capacity:trace-value-column-unknown", _cs("--value-column", "rps"),
         ("rate.csv", "'rps'")),
        ("capacity:trace-value-words", lambda m, o: [
            "capacity-study", "--trace", str(s(m, "w.csv", value=_cell(7, "lots"))), "--out",
            str(o)], ("w.csv", "lots", "line 9")),
        ("capacity:trace-value-missing", lambda m, o: [
            "capacity-study", "--trace", str(s(m, "x.csv", value=_cell(4, ""))), "--out",
            str(o)], ("x.csv", "line 6")),
        ("capacity:trace-negative", lambda m, o: [
            "capacity-study", "--trace", str(s(m, "neg.csv", value=lambda i: -5)), "--out",
            str(o)], ("neg.csv", "negative", "-5")),
        ("capacity:trace-too-short", lambda m, o: [
            "capacity-study", "--trace", str(s(m, "sh.csv", rows=DAY_5MIN)), "--out", str(o)],
         ("sh.csv", "days")),
        ("capacity:peak-x-zero", _cs("--peak-x", "0"), ("--peak-x", "0")),
        ("capacity:peak-x-negative", _cs("--peak-x", "-2"), ("--peak-x", "-2")),
        ("capacity:peak-x-nan", _cs("--peak-x", "nan"), ("--peak-x", "nan")),
        ("capacity:peak-x-inf", _cs("--peak-x", "inf"), ("--peak-x", "inf")),
        ("capacity:peak-x-two-with-trace", _cs("--peak-x", "1", "3"), ("--peak-x", "one value")),
        ("capacity:days-negative", _cs("--days", "-1"), ("--days", "-1")),
        ("capacity:days-nan", _cs("--days", "nan"), ("--days", "nan")),
        ("capacity:tick-zero", _cs("--tick", "0"), ("--tick", "0")),
        ("capacity:seeds-negative", _cs("--seeds", "-1"), ("--seeds", "-1")),
        ("capacity:real-traces-with-trace", lambda m, o: [
            "capacity-study", "--real-traces", "all", "--trace", str(s(m)), "--out", str(o)],
         ("--real-traces",)),
        ("capacity:real-traces-part-unknown", lambda m, o: [
            "capacity-study", "--real-traces", "train", "--out", str(o)],
         ("--real-traces", "train")),
        ("capacity:real-traces-peak-negative", lambda m, o: [
            "capacity-study", "--real-traces", "development", "--peak-x", "1", "-3", "--out",
            str(o)], ("--peak-x", "-3")),
        ("capacity:families-with-trace", _cs("--families", "daily"), ("--families",)),
    ]  # fmt: skip
    return [Case(cid, argv, expect) for cid, argv, expect in c]


def series_cases() -> list[Case]:
    """The rate-series part of the corpus."""
    return forecast_cases() + trace_cases()
