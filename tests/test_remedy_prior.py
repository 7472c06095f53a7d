"""The remedy prior: decision-time signature, nearest-incident vote, its store and command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.contracts import Candidate, Decision, IncidentView
from agents.deciding.remedy_prior import (
    DSIG_VERSION,
    FEATURES,
    PastCase,
    PriorError,
    RemedyMemory,
    RemedyPrior,
    choose_threshold,
    decision_signature,
)
from detectors.memory.decision_table import read_decision_incidents, write_decision_incidents
from detectors.memory.library import LibraryError
from firebreak.cli import main
from twin.control.actions import Rollback, ScaleTo
from twin.control.remedy_actions import RolloutRestart

N = len(FEATURES)


def _vec(*head: float) -> tuple[float, ...]:
    return tuple(list(head) + [0.0] * (N - len(head)))


def _view(**kw) -> IncidentView:
    base = dict(
        id="inc-1",
        opened=1000.0,
        now=1030.0,
        services=("a", "b"),
        signals=("latency_p99_ms",),
        detectors=("tier1",),
        n_alerts=2,
        top_cause="a",
        cause_confidence=0.8,
        signature="latency",
    )
    return IncidentView(**{**base, **kw})


def _decision(*cands: Candidate) -> Decision:
    return Decision("inc-1", 1030.0, "auto", cands[0], cands, "auto: runbook")


RESTART = Candidate(RolloutRestart(service="a"), "restart-rule")
ROLLBACK = Candidate(Rollback(service="a"), "deploy-rule")
SCALE = Candidate(ScaleTo(service="a", replicas=4), "scale-rule")


def _table(shift: float) -> pd.DataFrame:
    t = np.arange(300.0, 1031.0, 10.0)
    lat = np.where(t >= 1000.0, 100.0 + shift, 100.0) + 0.5 * np.sin(t)
    return pd.DataFrame(
        {"time": t, "a_latency-90": lat, "b_latency-90": np.full_like(t, 50.0), "a_cpu": 1.0}
    )


# ---------------------------------------------------------------- the signature
def test_signature_reads_the_window_and_the_rollouts():
    sig = decision_signature(_view(), _table(400.0), ("a", "b"), {"a": 900.0})
    assert sig.shape == (N,) and np.all(np.isfinite(sig))
    assert sig[FEATURES.index("cause_latency-90")] > 2.0  # a clear latency rise at the cause
    assert sig[FEATURES.index("cause_cpu")] == 0.0
    assert sig[FEATURES.index("cause_deployed")] == 1.0
    assert sig[FEATURES.index("kind_service")] == 1.0
    calm = decision_signature(_view(), _table(0.0), ("a", "b"), {"a": 100.0})  # old rollout
    assert abs(calm[FEATURES.index("cause_latency-90")]) < 1.0
    assert calm[FEATURES.index("cause_deployed")] == 0.0
    again = decision_signature(_view(), _table(400.0), ("a", "b"), {"a": 900.0})
    assert np.array_equal(sig, again)  # deterministic


def test_signature_without_time_column_is_refused():
    with pytest.raises(PriorError, match="'time'"):
        decision_signature(_view(), pd.DataFrame({"x": [1.0]}), ("a",), {})


# ---------------------------------------------------------------- the vote
def test_near_worked_remedy_is_suggested_and_far_one_ignored():
    prior = RemedyPrior(
        [
            PastCase("near", _vec(1.0), (("rollback", True),)),
            PastCase("far", _vec(9.0), (("scale_to", True),)),
        ],
        threshold=1.0,
    )
    kinds = ["rollout_restart", "rollback", "scale_to"]
    assert prior.suggest(np.array(_vec(1.2)), kinds)[0] == "rollback"
    assert prior.suggest(np.array(_vec(5.0)), kinds) is None  # nothing within the threshold
    assert prior.suggest(np.array(_vec(8.8)), kinds)[0] == "scale_to"


def test_failed_remedy_is_not_preferred():
    failed = [PastCase("p", _vec(1.0), (("rollout_restart", False), ("rollback", True)))]
    prior = RemedyPrior(failed, threshold=1.0)
    assert prior.suggest(np.array(_vec(1.0)), ["rollout_restart", "rollback"])[0] == "rollback"
    only_failed = RemedyPrior([PastCase("p", _vec(1.0), (("rollout_restart", False),))], 1.0)
    assert only_failed.suggest(np.array(_vec(1.0)), ["rollout_restart"]) is None
    # two near failures outvote one success of the same kind
    mixed = RemedyPrior(
        [
            PastCase("x", _vec(1.0), (("scale_to", False),)),
            PastCase("y", _vec(1.0), (("scale_to", False),)),
            PastCase("z", _vec(1.0), (("scale_to", True),)),
        ],
        threshold=1.0,
    )
    assert mixed.suggest(np.array(_vec(1.0)), ["scale_to"]) is None


def test_bad_prior_settings_are_refused():
    with pytest.raises(PriorError, match="threshold"):
        RemedyPrior([], threshold=-1.0)
    with pytest.raises(PriorError, match="features"):
        RemedyPrior([PastCase("short", (1.0, 2.0), (("rollback", True),))], threshold=1.0)


# -------------------------------------------------- applied within the runbook's choice
def _memory(kind: str) -> RemedyMemory:
    mem = RemedyMemory(RemedyPrior([PastCase("p", _vec(1.0), ((kind, True),))], 1.0))
    mem.signatures["inc-1"] = np.array(_vec(1.0))
    return mem


def test_prior_reorders_the_runbook_candidates_and_policy_sets_the_level():
    mem = _memory("rollback")
    seen = []

    def assess(view, cand):
        seen.append(cand)
        return "approval", "not trusted yet"

    out = mem.prefer("inc-1", _decision(RESTART, ROLLBACK, SCALE), _view(), assess)
    assert out.chosen is ROLLBACK and out.candidates[0] is ROLLBACK
    assert out.level == "approval"  # the policy's level, not the prior's
    assert seen == [ROLLBACK] and "prior: rollback" in out.reason
    assert mem.used == {"inc-1": "rollback"}


def test_prior_never_adds_an_action_the_runbook_did_not_offer():
    mem = _memory("failover")  # worked before, but no rule proposes it here
    decision = _decision(RESTART, SCALE)
    assert mem.prefer("inc-1", decision, _view(), lambda v, c: ("auto", "")) is decision
    assert mem.used == {}


def test_memory_records_verdicts_only_for_signed_cases():
    mem = RemedyMemory()
    mem.judged("unsigned", "rollback", True)
    mem.signatures["inc-1"] = np.array(_vec(0.5))
    mem.judged("inc-1", "rollout_restart", False)
    mem.judged("inc-1", "rollback", True)
    (rec,) = mem.records()
    assert rec["actions"] == [["rollout_restart", False], ["rollback", True]]
    assert rec["signature_version"] == DSIG_VERSION and rec["prior"] is None


# ------------------------------------------------------------ the threshold
def test_threshold_keeps_the_distance_where_neighbours_agree():
    cases = [PastCase(f"r{i}", _vec(0.1 * i), (("rollback", True),)) for i in range(4)]
    cases += [PastCase(f"s{i}", _vec(5.0 + 0.1 * i), (("scale_to", True),)) for i in range(4)]
    cases += [PastCase("odd", _vec(2.6), (("rollout_restart", True),))]
    # one wrong neighbour in nine (0.89): kept at the 0.8 precision asked by default …
    assert choose_threshold(cases) == pytest.approx(2.3)
    # … not at 0.95: only the close agreeing pairs
    t = choose_threshold(cases, precision=0.95)
    assert t == pytest.approx(0.1)
    assert choose_threshold(cases, precision=0.95) == t
    assert choose_threshold(cases[:2]) == 0.0  # too few to trust: the prior stays silent


# ------------------------------------------------------------ the store
def test_store_round_trip_and_version(tmp_path):
    lib = tmp_path / "lib.sqlite"
    recs = [
        {
            "name": "x",
            "system": "sock",
            "features": list(_vec(1.0)),
            "actions": [["rollback", True]],
        }
    ]
    write_decision_incidents(lib, recs, DSIG_VERSION, 0.75)
    got, threshold = read_decision_incidents(lib, DSIG_VERSION)
    assert threshold == 0.75 and got[0]["actions"] == [("rollback", True)]
    assert got[0]["features"] == list(_vec(1.0))
    with pytest.raises(LibraryError, match="does not match"):
        read_decision_incidents(lib, "dsig-0")
    with pytest.raises(LibraryError, match="cannot write decision incidents"):
        write_decision_incidents(lib, recs, DSIG_VERSION, 0.75)


# ------------------------------------------------------------ the command
def test_compare_bad_input_exits_2(tmp_path, capsys):
    assert main(["remedy-prior", "compare", "--library", str(tmp_path / "none.sqlite")]) == 2
    assert "no such incident library" in capsys.readouterr().err
    empty = tmp_path / "e.sqlite"
    empty.write_text("not a database")
    out = tmp_path / "out"
    assert main(["remedy-prior", "compare", "--library", str(empty), "--out", str(out)]) == 2
    assert "not an incident library" in capsys.readouterr().err
    assert not out.exists()
    assert main(["remedy-prior", "compare", "--library", str(empty), "--threshold", "nan"]) == 2
    assert "--threshold" in capsys.readouterr().err


def test_learn_refuses_an_existing_library(tmp_path, capsys):
    lib = tmp_path / "lib.sqlite"
    lib.write_text("")
    assert main(["remedy-prior", "learn", "--library", str(lib)]) == 2
    assert "--append" in capsys.readouterr().err
