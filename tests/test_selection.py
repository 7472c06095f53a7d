"""Risk-aware selection: Beta posteriors, risk and cost, dry runs, reasons, determinism."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import beta as beta_dist

from agents.contracts import Candidate
from agents.deciding.selection import (
    RISK_TABLE,
    OutcomeModel,
    RiskAwareSelector,
    SelectionError,
    describe,
    touched_share,
)
from twin.control.actions import Action, ForceBreaker, NoOp, RestartPods, Rollback, ScaleTo

SIG = "latency+errors"


def cand(action: Action, rule: str = "r") -> Candidate:
    return Candidate(action=action, rule=rule)


# --- the outcome model --------------------------------------------------------------------


def test_posterior_update_matches_scipy() -> None:
    model = OutcomeModel(prior=(2.0, 3.0))
    outcomes = [True, True, False, True, False, True, True]
    for ok in outcomes:
        model.update(SIG, "rollback", ok)
    s, f = sum(outcomes), len(outcomes) - sum(outcomes)
    a, b = 2.0 + s, 3.0 + f
    assert model.counts(SIG, "rollback") == (s, f)
    assert model.posterior(SIG, "rollback") == (a, b)
    assert model.mean(SIG, "rollback") == pytest.approx(beta_dist.mean(a, b))
    assert model.p_success(SIG, "rollback") == pytest.approx(beta_dist.mean(a, b))
    for q in (0.05, 0.1, 0.5):
        assert model.lower(SIG, "rollback", q) == pytest.approx(beta_dist.ppf(q, a, b))
    assert model.lower(SIG, "rollback") < model.mean(SIG, "rollback")


def test_prior_only_and_per_kind_priors() -> None:
    model = OutcomeModel(kind_priors={"noop": (1.0, 4.0)})
    assert model.mean("memory", "rollback") == pytest.approx(0.5)  # Beta(1, 1)
    assert model.mean("memory", "noop") == pytest.approx(0.2)
    model.update("memory", "noop", True)
    assert model.posterior("memory", "noop") == (2.0, 4.0)


def test_signatures_pool_across_spellings_and_stay_apart_otherwise() -> None:
    model = OutcomeModel()
    model.update("errors+latency", "rollback", True)
    assert model.counts("latency+errors", "rollback") == (1.0, 0.0)
    assert model.counts("latency", "rollback") == (0.0, 0.0)
    assert model.counts("latency+errors", "restart_pods") == (0.0, 0.0)


def test_outcome_model_json_round_trip(tmp_path: Path) -> None:
    model = OutcomeModel(prior=(1.5, 1.0), kind_priors={"noop": (1.0, 2.0)})
    for sig, kind, ok in [
        ("memory", "restart_pods", True),
        ("memory", "restart_pods", False),
        (SIG, "rollback", True),
    ]:
        model.update(sig, kind, ok)
    path = tmp_path / "outcomes.json"
    model.save(path)
    back = OutcomeModel.load(path)
    assert back.to_dict() == model.to_dict()
    assert back.posterior("memory", "restart_pods") == model.posterior("memory", "restart_pods")
    assert back.prior_for("noop") == (1.0, 2.0)
    assert json.loads(path.read_text())["version"] == 1


def test_outcome_model_errors(tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match="prior: a Beta prior is two positive numbers"):
        OutcomeModel(prior=(0.0, 1.0))
    with pytest.raises(SelectionError, match=r"kind_priors\.noop"):
        OutcomeModel(kind_priors={"noop": (1.0,)})
    with pytest.raises(SelectionError, match=r"quantile must be in \(0, 1\)"):
        OutcomeModel().lower("memory", "noop", 1.0)
    with pytest.raises(SelectionError, match=r"missing\.json: file not found"):
        OutcomeModel.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SelectionError, match=r"bad\.json: not JSON"):
        OutcomeModel.load(bad)
    bad.write_text(json.dumps({"version": 1, "outcomes": [{"signature": "memory"}]}))
    with pytest.raises(SelectionError, match=r"bad\.json: malformed outcome row"):
        OutcomeModel.load(bad)
    bad.write_text(json.dumps({"version": 7}))
    with pytest.raises(SelectionError, match=r"bad\.json: not an outcome model"):
        OutcomeModel.load(bad)


# --- scoring ------------------------------------------------------------------------------


def test_prefers_higher_predicted_success() -> None:
    model = OutcomeModel()
    for _ in range(4):
        model.update(SIG, "restart_pods", True)
        model.update(SIG, "rollback", False)
    ranking = RiskAwareSelector(model).rank(SIG, [cand(Rollback("a")), cand(RestartPods("a"))])
    assert ranking.chosen is not None
    assert ranking.chosen.action == RestartPods("a")
    assert ranking.chosen.p_success == pytest.approx(5 / 6)


def test_prefers_lower_risk_at_equal_success() -> None:
    half, full = RestartPods("a", share=0.5), RestartPods("a", share=1.0)
    ranking = RiskAwareSelector().rank(SIG, [cand(full), cand(half)], {"a": 4})
    assert [c.action for c in ranking.candidates] == [half, full]
    assert ranking.candidates[0].risk == pytest.approx(RISK_TABLE["restart_pods"].base + 0.125)
    assert ranking.candidates[1].risk > ranking.candidates[0].risk


def test_risk_weight_trades_success_against_risk() -> None:
    model = OutcomeModel()
    model.update(SIG, "force_breaker", True)  # the breaker worked once, but it is riskier
    actions = [cand(ForceBreaker("a", "b", "open")), cand(RestartPods("b", share=0.5))]
    bold = RiskAwareSelector(model, risk_weight=0.1).rank(SIG, actions, {"b": 2})
    careful = RiskAwareSelector(model, risk_weight=3.0).rank(SIG, actions, {"b": 2})
    assert bold.chosen is not None and bold.chosen.action.kind == "force_breaker"
    assert careful.chosen is not None and careful.chosen.action.kind == "restart_pods"


def test_scaling_costs_replica_hours_and_scaling_in_risks_capacity() -> None:
    replicas = {"a": 4}
    selector = RiskAwareSelector()
    risk_out, cost_out = selector.risk_cost(ScaleTo("a", 6), replicas)
    risk_in, cost_in = selector.risk_cost(ScaleTo("a", 2), replicas)
    entry = RISK_TABLE["scale_to"]
    assert cost_out == pytest.approx(2 * entry.per_replica) and cost_in == 0.0
    assert risk_in == pytest.approx(entry.base + entry.per_share * 0.5)
    assert risk_in > risk_out
    assert touched_share(RestartPods("a", count=1), replicas) == pytest.approx(0.25)
    cheap = RiskAwareSelector(cost_weight=1.0).rank(
        SIG, [cand(ScaleTo("a", 8)), cand(ScaleTo("a", 5))], replicas
    )
    assert cheap.chosen is not None and cheap.chosen.action == ScaleTo("a", 5)


def test_lower_quantile_prefers_the_proven_action() -> None:
    model = OutcomeModel()
    for ok in [True] * 16 + [False] * 4:  # proven: 0.77 mean, narrow
        model.update(SIG, "rollback", ok)
    model.update(SIG, "restart_pods", True)  # untried-ish: Beta(2, 1), mean 0.67, wide
    model.update(SIG, "restart_pods", True)  # mean 0.75, still wide
    model.update(SIG, "restart_pods", True)  # mean 0.80 > 0.77
    actions = [cand(RestartPods("a", share=0.5)), cand(Rollback("a"))]
    no_risk = {k: RISK_TABLE["noop"] for k in ("rollback", "restart_pods")}
    by_mean = RiskAwareSelector(model, risk_table=no_risk).rank(SIG, actions)
    by_lower = RiskAwareSelector(model, benefit="lower", risk_table=no_risk).rank(SIG, actions)
    assert by_mean.chosen is not None and by_mean.chosen.action.kind == "restart_pods"
    assert by_lower.chosen is not None and by_lower.chosen.action.kind == "rollback"
    assert "0.1-quantile" in by_lower.reason


# --- dry runs -----------------------------------------------------------------------------


def _fork(effects: dict[str, float]):
    calls: list[Action] = []

    def dry_run(action: Action) -> dict[str, Any]:
        calls.append(action)
        return {"health_before": 0.6, "health_after": 0.6 + effects.get(action.kind, 0.0)}

    return dry_run, calls


def test_dry_run_showing_harm_changes_the_ranking() -> None:
    actions = [cand(Rollback("a")), cand(RestartPods("a", share=1.0))]
    plain = RiskAwareSelector().rank(SIG, actions, {"a": 2})
    assert plain.chosen is not None and plain.chosen.action.kind == "rollback"
    dry_run, calls = _fork({"rollback": -0.3, "restart_pods": 0.05})
    forked = RiskAwareSelector(dry_run=dry_run).rank(SIG, actions, {"a": 2})
    assert forked.chosen is not None and forked.chosen.action.kind == "restart_pods"
    assert len(calls) == 2
    loser = forked.candidates[1]
    assert loser.dry_run is not None and loser.dry_run["improvement"] == pytest.approx(-0.3)
    assert "worse dry run" in forked.reason
    assert "health 0.600 -> 0.650 in the fork" in forked.reason


def test_dry_run_only_where_the_rule_allows_and_for_the_top_few() -> None:
    actions = [cand(Rollback("a"), "safe"), cand(RestartPods("a"), "wild"), cand(NoOp(), "safe")]
    dry_run, calls = _fork({"rollback": -0.5})
    ranking = RiskAwareSelector(dry_run=dry_run, dry_run_top=1).rank(
        SIG, actions, {"a": 2}, dry_run_rules={"safe"}
    )
    assert calls == [NoOp()]  # the best allowed one only (noop has no risk)
    by_action = {c.action: c for c in ranking.candidates}
    assert by_action[RestartPods("a")].dry_run is None
    assert by_action[Rollback("a")].dry_run is None


def test_baseline_without_action_is_preferred_when_given() -> None:
    def dry_run(action: Action) -> dict[str, Any]:
        return {"health_before": 0.2, "health_noop": 0.5, "health_after": 0.6}

    ranking = RiskAwareSelector(dry_run=dry_run).rank(SIG, [cand(Rollback("a"))])
    assert ranking.candidates[0].dry_run["improvement"] == pytest.approx(0.1)  # type: ignore[index]


def test_a_failed_dry_run_is_recorded_and_changes_nothing() -> None:
    from twin.errors import FirebreakError

    def dry_run(action: Action) -> dict[str, Any]:
        raise FirebreakError("fork diverged")

    plain = RiskAwareSelector().rank(SIG, [cand(Rollback("a"))])
    ranking = RiskAwareSelector(dry_run=dry_run).rank(SIG, [cand(Rollback("a"))])
    assert ranking.candidates[0].score == plain.candidates[0].score
    assert ranking.candidates[0].dry_run == {"error": "fork diverged"}
    assert "dry run failed: fork diverged" in ranking.reason


# --- reasons and determinism --------------------------------------------------------------


def test_reason_names_the_choice_its_components_and_the_runner_up() -> None:
    actions = [cand(Rollback("cart"), "deploy"), cand(RestartPods("cart", share=1.0), "mem")]
    ranking = RiskAwareSelector().rank(SIG, actions, {"cart": 2})
    text = ranking.reason
    assert text.startswith("chose rollback(service='cart') from rule 'deploy': score 0.350")
    for part in ("benefit 0.500", "posterior mean, Beta(1, 1)", "risk 0.150", "cost 0.000"):
        assert part in text
    assert "runner-up restart_pods(service='cart', share=1.0) from rule 'mem'" in text
    assert "higher risk (0.300 vs 0.150)" in text
    assert describe(RestartPods("cart", share=0.5)) == "restart_pods(service='cart', share=0.5)"


def test_reason_for_a_single_candidate_and_for_none() -> None:
    one = RiskAwareSelector().rank(SIG, [cand(NoOp())])
    assert one.reason.endswith("the only candidate")
    none = RiskAwareSelector().rank(SIG, [])
    assert none.chosen is None and "no candidates" in none.reason


def test_ties_break_on_a_stable_key_whatever_the_input_order() -> None:
    flat = {k: RISK_TABLE["noop"] for k in ("rollback", "restart_pods", "noop")}
    actions = [
        cand(Rollback("b"), "x"),
        cand(Rollback("a"), "y"),
        cand(RestartPods("a"), "x"),
        cand(NoOp(), "z"),
    ]
    selector = RiskAwareSelector(risk_table=flat)
    first = selector.rank(SIG, actions)
    orders = set()
    rng = random.Random(0)
    for _ in range(10):
        shuffled = actions[:]
        rng.shuffle(shuffled)
        orders.add(tuple(c.action for c in selector.rank(SIG, shuffled).candidates))
    assert orders == {tuple(c.action for c in first.candidates)}
    assert [c.action for c in first.candidates] == [
        NoOp(),
        RestartPods("a"),
        Rollback("a"),
        Rollback("b"),
    ]
    assert "tied on score" in first.reason
    assert selector.rank(SIG, actions) == first


def test_selector_rejects_bad_settings() -> None:
    with pytest.raises(SelectionError, match="risk_weight must be finite and >= 0"):
        RiskAwareSelector(risk_weight=-1.0)
    with pytest.raises(SelectionError, match="benefit must be 'mean' or 'lower'"):
        RiskAwareSelector(benefit="max")  # type: ignore[arg-type]
    with pytest.raises(SelectionError, match="dry_run_top must be >= 1"):
        RiskAwareSelector(dry_run_top=0)
