"""Incident memory: signatures from telemetry, the SQLite library, few-shot recognition."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from memory_fakes import AT, KINDS, incident

from detectors.memory.fewshot import UNKNOWN, FewShotKinds, draw_support, nearest
from detectors.memory.library import Action, Incident, IncidentLibrary, LibraryError
from detectors.memory.signature import FEATURES, SIGNATURE_VERSION, Signature, signature


def _sig(kind: str, target: str = "a", seed: int = 0) -> Signature:
    table, tel = incident(kind, target, seed)
    return signature(table, AT, tel)


def test_each_fault_kind_shows_in_its_own_modality() -> None:
    cpu, delay, err = _sig("cpu"), _sig("delay"), _sig("error_log")
    for s in (cpu, delay, err):
        assert s.blocks == ("metrics", "logs", "traces", "topology")
        assert s.version == SIGNATURE_VERSION
        assert set(s.features) <= set(FEATURES)
    assert cpu.focus == "a" and cpu.features["m_focus_cpu"] > 2.0
    assert delay.features["m_focus_cpu"] < 1.5
    assert delay.features["t_edge"] > cpu.features["t_edge"] + 1.0
    assert err.features["l_error_up"] > 1.0 and cpu.features["l_error_up"] == 0.0
    assert err.focus == "a"


def test_signature_is_deterministic_and_round_trips() -> None:
    a, b = _sig("delay", seed=3), _sig("delay", seed=3)
    assert a == b
    assert Signature.from_dict(a.to_dict()).vector() == pytest.approx(a.vector())
    assert _sig("delay", seed=4).vector().tolist() != a.vector().tolist()


def test_metrics_only_signature_has_no_trace_or_log_block() -> None:
    table, _ = incident("cpu", "b", 0)
    s = signature(table, AT)
    assert s.blocks == ("metrics",)
    assert not s.mask()[[FEATURES.index("t_edge"), FEATURES.index("l_error_up")]].any()
    empty = signature(table.iloc[:0], AT)
    assert empty.blocks == () and empty.notes


def _support() -> tuple[list[Signature], list[str]]:
    sigs, kinds = [], []
    for kind in KINDS:
        for seed in range(3):
            sigs.append(_sig(kind, "a" if seed % 2 else "b", seed))
            kinds.append(kind)
    return sigs, kinds


def test_few_shot_recognises_kinds_and_says_unknown_for_a_new_one() -> None:
    sigs, kinds = _support()
    model = FewShotKinds().fit(sigs, kinds)
    queries = [_sig(k, "a", 10 + i) for i, k in enumerate(KINDS)]
    assert model.predict(queries) == list(KINDS)
    without_delay = [(s, k) for s, k in zip(sigs, kinds, strict=True) if k != "delay"]
    closed = FewShotKinds().fit(*zip(*without_delay, strict=True))
    d = closed.distances(queries)
    gap = float(d[1].min())  # the delay query: nearest known kind
    known = float(max(d[0].min(), d[2].min()))
    assert gap > known
    open_set = FewShotKinds(unknown_distance=(gap + known) / 2).fit(
        *zip(*without_delay, strict=True)
    )
    assert open_set.predict(queries) == ["cpu", UNKNOWN, "error_log"]


def test_nearest_and_support_draws_are_deterministic() -> None:
    sigs, kinds = _support()
    hits = nearest(_sig("cpu", "a", 20), sigs, top=3)
    assert [kinds[i] for i, _ in hits] == ["cpu"] * 3
    assert [d for _, d in hits] == sorted(d for _, d in hits)
    a = draw_support(kinds, 2, np.random.default_rng(1))
    assert a == draw_support(kinds, 2, np.random.default_rng(1))
    assert len(a) == 6 and sorted({kinds[i] for i in a}) == sorted(KINDS)
    with pytest.raises(ValueError):
        FewShotKinds(weighting="magic").fit(sigs, kinds)


def _incident(name: str, sig: Signature) -> Incident:
    return Incident(name, "fake", "memory_fakes", AT, "cpu", "a", sig, (Action("restart", True),))


def test_library_stores_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "lib.sqlite"
    sig = _sig("cpu")
    with IncidentLibrary.open(path, create=True) as lib:
        lib.add([_incident("one", sig)])
    with IncidentLibrary.open(path) as lib:
        lib.add([_incident("two", sig)])
        got = lib.incidents()
    assert [i.name for i in got] == ["one", "two"]
    assert got[0].fixed_by() == ["restart"]
    assert got[0].signature.vector() == pytest.approx(sig.vector())


def test_library_writes_nothing_on_error(tmp_path: Path) -> None:
    path = tmp_path / "lib.sqlite"
    sig = _sig("cpu")
    with pytest.raises(RuntimeError), IncidentLibrary.open(path, create=True) as lib:
        lib.add([_incident("one", sig)])
        raise RuntimeError("interrupted")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with IncidentLibrary.open(path, create=True) as lib:
        lib.add([_incident("one", sig)])
    with IncidentLibrary.open(path) as lib:
        with pytest.raises(LibraryError, match="'one' is already"):
            lib.add([_incident("new", sig), _incident("one", sig)])
        assert [i.name for i in lib.incidents()] == ["one"]


def test_library_refuses_other_versions_and_other_files(tmp_path: Path) -> None:
    path = tmp_path / "lib.sqlite"
    with IncidentLibrary.open(path, create=True) as lib:
        lib.add([_incident("one", _sig("cpu"))])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = 'sig-0' WHERE key = 'signature_version'")
    conn.close()
    with pytest.raises(LibraryError, match="signature_version 'sig-0'"), IncidentLibrary.open(path):
        pass
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database at all\n" * 100)
    with pytest.raises(LibraryError, match="not an incident library"), IncidentLibrary.open(junk):
        pass
    with pytest.raises(LibraryError, match="no such"), IncidentLibrary.open(tmp_path / "n.db"):
        pass
    old = Signature({}, (), None, "sig-0")
    with (
        IncidentLibrary.open(tmp_path / "b.sqlite", create=True) as lib,
        pytest.raises(LibraryError, match="sig-0"),
    ):
        lib.add([_incident("x", old)])
