"""Bad inputs to `firebreak sim2real`: part of the corpus in bad_input_corpus.py, in a file
of its own to keep each under 500 lines."""

from __future__ import annotations

from pathlib import Path

from bad_input_corpus import Case, _file, _folder
from test_real_bench import DAY, mini_nezha


def _nezha(m: Path) -> str:
    """A miniature of Nezha's layout (one day, one fault)."""
    return str(mini_nezha(m))


def sim2real_cases() -> list[Case]:
    def argv(*extra: str, data=_nezha):
        return lambda m, o: ["sim2real", data(m), *extra]

    return [
        Case("sim2real:missing-data-dir", argv(data=lambda m: str(m / "nowhere")),
             ("nowhere", "not a directory")),
        Case("sim2real:not-nezha", argv(data=lambda m: str(_folder(m, "empty"))),
             ("empty", "no Nezha Train Ticket data")),
        Case("sim2real:data-is-a-file", argv(data=lambda m: str(_file(m, "data.csv", "a,b\n"))),
             ("data.csv", "not a directory")),
        Case("sim2real:unknown-day", argv("--days", "2023-02-30"),
             ("--days", "2023-02-30", DAY)),
        Case("sim2real:unknown-method", argv("--methods", "robust", "sherlock"),
             ("--methods", "sherlock")),
        Case("sim2real:unknown-calibrate-day", argv("--calibrate-day", "1999-01-01"),
             ("--calibrate-day", "1999-01-01")),
        Case("sim2real:missing-scenario", argv("--scenario", "no-such-twin.yaml"),
             ("no-such-twin.yaml",)),
        Case("sim2real:scenario-not-a-mapping",
             lambda m, o: ["sim2real", _nezha(m), "--scenario",
                           str(_file(m, "list.yaml", "- a\n- b\n"))],
             ("list.yaml", "mapping")),
        Case("sim2real:limit-zero", argv("--limit", "0"), ("--limit", "0")),
        Case("sim2real:seed-negative", argv("--seed", "-1"), ("--seed", "-1")),
        Case("sim2real:out-is-a-directory",
             lambda m, o: ["sim2real", _nezha(m), "--out", str(_folder(m, "outdir"))],
             ("--out", "outdir", "directory")),
        Case("sim2real:out-folder-missing",
             lambda m, o: ["sim2real", _nezha(m), "--out", str(m / "no" / "r.json")],
             ("--out", "does not exist")),
    ]  # fmt: skip
