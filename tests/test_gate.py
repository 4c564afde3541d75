"""The gate's decisions, always with champion and challenger values that differ."""

import pytest

from tollgate.records import ChampionEvaluation
from tollgate.steps.gate import Decision, Policy, decide

POLICY = Policy(absolute={"roc_auc": {"min": 0.70}, "log_loss": {"max": 0.60}},
                max_degradation={"roc_auc": 0.005, "log_loss": 0.01})


def metrics(roc_auc: float, log_loss: float = 0.45) -> dict[str, float]:
    return {"roc_auc": roc_auc, "log_loss": log_loss}


def rule(decision: Decision, name: str):
    return next(r for r in decision.rules if r.name == name)


def test_better_challenger_passes():
    decision = decide(metrics(0.82, 0.40), ChampionEvaluation(3, metrics(0.78, 0.44)), POLICY)
    assert decision.passed
    assert decision.champion_version == 3
    assert all(r.passed for r in decision.rules)
    assert "champion v3" in decision.reasons[0]


def test_worse_challenger_is_blocked_with_the_numbers():
    decision = decide(metrics(0.760), ChampionEvaluation(3, metrics(0.790)), POLICY)
    assert not decision.passed
    change = rule(decision, "roc_auc vs champion")
    assert not change.passed
    assert change.observed == pytest.approx(0.760)
    # The reason names the metric, both values, the gap and the tolerance.
    assert "0.7600" in change.detail and "0.7900" in change.detail and "0.0300 worse" in change.detail
    assert change.detail in decision.reasons


def test_slightly_worse_within_tolerance_passes():
    decision = decide(metrics(0.7960), ChampionEvaluation(1, metrics(0.7995)), POLICY)
    assert decision.passed
    assert rule(decision, "roc_auc vs champion").passed


def test_just_beyond_tolerance_is_blocked():
    decision = decide(metrics(0.7940), ChampionEvaluation(1, metrics(0.7995)), POLICY)
    assert not decision.passed
    # Blocked by the change rule alone: 0.7940 meets every absolute threshold.
    assert [r.name for r in decision.rules if not r.passed] == ["roc_auc vs champion"]
    assert rule(decision, "roc_auc vs champion").observed == pytest.approx(0.7940)


def test_lower_is_better_metrics_compare_in_the_right_direction():
    # log loss rising by 0.05 is a degradation even though the number got bigger.
    worse = decide(metrics(0.80, log_loss=0.50), ChampionEvaluation(2, metrics(0.80, log_loss=0.45)), POLICY)
    assert not rule(worse, "log_loss vs champion").passed
    better = decide(metrics(0.80, log_loss=0.40), ChampionEvaluation(2, metrics(0.80, log_loss=0.45)), POLICY)
    assert rule(better, "log_loss vs champion").passed


def test_no_champion_applies_only_absolute_thresholds():
    decision = decide(metrics(0.75), None, POLICY)
    assert decision.passed
    assert {r.name for r in decision.rules} == {"roc_auc threshold", "log_loss threshold"}
    assert "change thresholds skipped" in decision.reasons[0]
    assert decision.champion_version is None


def test_no_champion_still_enforces_absolute_thresholds():
    decision = decide(metrics(0.65), None, POLICY)
    assert not decision.passed
    assert decision.reasons == ["roc_auc 0.6500 fails the threshold >= 0.7"]


def test_absolute_threshold_blocks_even_when_better_than_champion():
    decision = decide(metrics(0.68), ChampionEvaluation(5, metrics(0.62)), POLICY)
    assert not decision.passed
    assert rule(decision, "roc_auc vs champion").passed
    assert not rule(decision, "roc_auc threshold").passed


def test_missing_metric_fails_rather_than_passing_silently():
    decision = decide({"log_loss": 0.4}, ChampionEvaluation(1, metrics(0.8)), POLICY)
    assert not decision.passed
    assert "roc_auc was not measured" in decision.reasons


def test_champion_that_cannot_be_scored_blocks_promotion():
    champion = ChampionEvaluation(4, None, error="the champion needs columns this data does not have: ['income']")
    decision = decide(metrics(0.9), champion, POLICY)
    assert not decision.passed
    assert "champion v4" in decision.reasons[0] and "income" in decision.reasons[0]


def test_decision_round_trips_through_json_shape():
    decision = decide(metrics(0.81), ChampionEvaluation(2, metrics(0.80)), POLICY)
    assert Decision.from_dict(decision.to_dict()) == decision


def test_policy_from_config_matches_defaults():
    from tollgate.config import load_config

    policy = Policy.from_config(load_config().gate.model_dump())
    assert policy.absolute["roc_auc"]["min"] == 0.70
    assert policy.max_degradation["roc_auc"] == 0.005
