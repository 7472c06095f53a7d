"""The bad-input corpus (tests/bad_input_corpus.py) through the real command line: every case
exits 2 with one clear message naming what is wrong, never a traceback, never a silent
accept, never a hang, never a half-written output.

Each case runs in-process (`firebreak.cli.main`), so an exception that escapes the command
line fails the case with its traceback; a per-case time limit catches a hang.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from bad_input_corpus import all_cases
from run_files import assert_every_file_opens

from firebreak.cli import main

CASES = all_cases()


def test_the_corpus_is_large_and_covers_every_command() -> None:
    from firebreak.cli import build_parser

    assert len(CASES) >= 200
    assert len({c.id for c in CASES}) == len(CASES)
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    covered = {c.id.split(":")[0] for c in CASES}
    aliases = {
        "generate": "generate-topology",
        "import": "import-traces",
        "change": "validate-change",
        "impact": "impact-study",
        "capacity": "capacity-study",
    }
    covered = {aliases.get(name, name) for name in covered}
    missing = commands - covered
    assert not missing, f"commands without a bad-input case: {sorted(missing)}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(case, tmp_path: Path) -> None:
    materials = tmp_path / "materials"
    materials.mkdir()
    out = tmp_path / "out"
    argv = case.argv(materials, out)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
    err = stderr.getvalue()
    assert code == 2, f"exit {code} (a silent accept?) for {argv}\n{err}{stdout.getvalue()}"
    assert "Traceback" not in err
    assert err.strip(), "no message"
    missing = [f for f in case.expect if f not in err]
    assert not missing, f"{missing} not named in: {err!r}"
    assert_every_file_opens(out)
