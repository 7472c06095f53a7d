"""`firebreak incidents`: add, similar, list and eval end to end on small tables."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from memory_fakes import AT, table

from firebreak.cli import main


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _csv(folder: Path, kind: str, target: str, seed: int) -> Path:
    path = folder / f"{kind}-{target}-{seed}.csv"
    table(kind, target, np.random.default_rng(seed)).to_csv(path, index=False)
    return path


def test_add_list_similar_eval(tmp_path: Path) -> None:
    lib = str(tmp_path / "lib.sqlite")
    for i, (kind, action) in enumerate([("cpu", "restart"), ("none", "rollback")] * 2):
        path = _csv(tmp_path, kind, "a", i)
        code, out, err = _run(
            "incidents", "add", str(path), "--library", lib, "--at", str(AT),
            "--kind", kind, "--root", "a", "--action", f"{action}=worked",
            "--action", "scale=failed",
        )  # fmt: skip
        assert code == 0, err
        assert f"({i + 1} incidents)" in out
    code, out, _ = _run("incidents", "list", "--library", lib)
    assert code == 0 and "4 incidents" in out and "fixed by restart (tried: scale)" in out
    query = str(_csv(tmp_path, "cpu", "a", 9))
    argv = ("incidents", "similar", query, "--library", lib, "--at", str(AT), "--top", "2")
    code, out, _ = _run(*argv)
    assert code == 0
    assert "recognised kind: cpu" in out
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(lines) == 2 and all("cpu at a  fixed by restart" in line for line in lines)
    assert _run(*argv)[1] == out  # deterministic
    code, out, _ = _run("incidents", "eval", "--library", lib, "--k", "1", "--episodes", "3")
    assert code == 0 and "k=1: accuracy 1.000" in out and "in 1.000 of 4" in out


def test_a_refused_add_leaves_no_library(tmp_path: Path) -> None:
    lib = tmp_path / "lib.sqlite"
    path = _csv(tmp_path, "cpu", "a", 0)
    code, _, err = _run(
        "incidents", "add", str(path), "--library", str(lib), "--at", "1e9",
        "--kind", "cpu", "--root", "a",
    )  # fmt: skip
    assert code == 2 and "outside" in err
    assert not lib.exists() and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_rehearse_lists_the_nearest_past_incidents(tmp_path: Path) -> None:
    from bad_input_corpus import _good

    scenario = _good(tmp_path)
    code, _, err = _run("run", str(scenario), "--out", str(tmp_path / "past"))
    assert code == 0, err
    lib = str(tmp_path / "lib.sqlite")
    code, _, err = _run(
        "incidents", "add", str(tmp_path / "past"), "--library", lib, "--from-labels",
        "--action", "restart_pods=worked", "--name", "the crash last week",
    )  # fmt: skip
    assert code == 0, err
    out_dir = tmp_path / "rehearsal"
    code, out, err = _run(
        "rehearse", str(scenario), "--ops", "ai", "--out", str(out_dir), "--incidents", lib
    )
    assert code == 0, err
    assert "nearest the crash last week (crash, fixed by restart_pods)" in out
    report = (out_dir / "report.html").read_text()
    assert "Similar past incidents" in report and "the crash last week" in report
