"""The attention RCA model of the memory study: tokens from telemetry, seeded training that
learns a root from a handful of incidents, and no leak into torch's global generator."""

from __future__ import annotations

import torch
from memory_fakes import AT, incident

from experiments.memory.attention import MODALITY_DIMS, ac1, incident_tokens, make_model, train


def _tokens(n: int, first: int = 0) -> list:
    out = []
    for s in range(first, first + n):
        target = "a" if s % 2 else "b"
        table, tel = incident(("cpu", "delay", "error_log")[s % 3], target, s)
        out.append(incident_tokens(table, AT, tel, root=target))
    return out


def test_tokens_cover_every_service_and_modality() -> None:
    tok = _tokens(1)[0]
    assert tok.services == ["a", "b", "front"] and tok.root == 1
    assert {m: x.shape for m, x in tok.rows.items()} == {
        m: (3, k) for m, k in MODALITY_DIMS.items()
    }
    assert incident_tokens(None, AT).services == []


def test_training_is_seeded_learns_the_root_and_leaves_global_state() -> None:
    state = torch.random.get_rng_state()
    train_set, test_set = _tokens(6), _tokens(3, first=20)
    a = train(make_model(0), train_set, 120, 0)
    b = train(make_model(0), train_set, 120, 0)
    assert torch.equal(torch.random.get_rng_state(), state)
    with torch.no_grad():
        assert torch.equal(a.service_scores(test_set[0]), b.service_scores(test_set[0]))
    assert ac1(a, train_set) == 1.0 and ac1(a, test_set) >= 2 / 3
