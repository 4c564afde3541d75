"""Fairness: fairlearn's numbers equal hand-computed ones; the gate bounds them; sensitive
columns reach evaluation even when the model does not use them."""

import pandas as pd
import pytest

from tollgate.config import SensitiveAttributeConfig, load_config
from tollgate.data.builtin import generate_applicants
from tollgate.errors import ConfigError, DataError
from tollgate.records import AttributeFairness, ChampionEvaluation, GroupRates
from tollgate.steps.fairness import attribute_fairness, fairness_report, group_labels
from tollgate.steps.gate import Policy, decide
from tollgate.steps.preprocess import LABEL, build_feature_spec, split_dataset

# Group a: 5 rows, positives at rows 0-1; group b: 5 rows, positive at row 5; group c: 2 rows, no positives.
Y_TRUE = [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
Y_PRED = [1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1]
GROUPS = pd.Series(["a"] * 5 + ["b"] * 5 + ["c"] * 2)


def test_group_rates_and_disparities_equal_hand_computed_values():
    result = attribute_fairness(Y_TRUE, Y_PRED, GROUPS, min_group_size=3, min_group_positives=1)
    groups = {g["group"]: g for g in result["groups"]}
    # a: selected 2/5; TPR 1/2 (row 0 of rows 0-1); FPR 1/3 (row 2 of rows 2-4)
    assert groups["a"]["selection_rate"] == pytest.approx(2 / 5)
    assert groups["a"]["tpr"] == pytest.approx(1 / 2) and groups["a"]["fpr"] == pytest.approx(1 / 3)
    # b: selected 3/5; TPR 1/1; FPR 2/4
    assert groups["b"]["selection_rate"] == pytest.approx(3 / 5)
    assert groups["b"]["tpr"] == pytest.approx(1.0) and groups["b"]["fpr"] == pytest.approx(2 / 4)
    # c: too small to bound, and without positives its TPR is undefined rather than 0
    assert groups["c"]["bounded"] is False and groups["c"]["tpr"] is None and groups["c"]["fpr"] == 0.5
    assert result["disparate_impact"] == pytest.approx((2 / 5) / (3 / 5))
    assert result["equal_opportunity_difference"] == pytest.approx(1.0 - 0.5)
    assert groups["a"]["selection_ratio_to_highest"] == pytest.approx(2 / 3)
    # with c counted (min size 1) the lowest selection rate is still a's; c has no TPR to compare
    everyone = attribute_fairness(Y_TRUE, Y_PRED, GROUPS, min_group_size=1, min_group_positives=1)
    assert everyone["disparate_impact"] == pytest.approx((2 / 5) / (3 / 5))
    assert everyone["equal_opportunity_difference"] == pytest.approx(0.5)


def test_too_few_eligible_groups_or_no_positive_decisions_leave_the_disparities_unmeasured():
    result = attribute_fairness(Y_TRUE, Y_PRED, GROUPS, min_group_size=6, min_group_positives=1)
    assert result["disparate_impact"] is None and result["equal_opportunity_difference"] is None
    assert "fewer than two groups with at least 6 test rows" in result["unmeasured"]["disparate_impact"]
    nobody = attribute_fairness(Y_TRUE, [0] * len(Y_TRUE), GROUPS, min_group_size=3,
                                min_group_positives=1)
    assert nobody["disparate_impact"] is None and nobody["equal_opportunity_difference"] == 0.0
    assert "no group has a single positive decision" in nobody["unmeasured"]["disparate_impact"]
    blocked = decide({}, None, Policy(fairness={"min_disparate_impact": 0.8}), fairness={"gender": AttributeFairness.from_dict(nobody)})
    assert not blocked.passed and "no group has a single positive decision" in blocked.reasons[0]


def test_numeric_attributes_are_binned_in_order_and_missing_is_a_group():
    labels, order = group_labels(pd.Series([18, 29.9, 30, 49, 50, None, 90]), [30, 50])
    assert labels.tolist() == ["<30", "<30", "30-50", "30-50", ">=50", "<missing>", ">=50"]
    assert order == ["<30", "30-50", ">=50", "<missing>"]
    test = pd.DataFrame({"age": [20, 25, 40, 45, 60, 65], LABEL: [1, 0, 1, 0, 1, 0]})
    report = fairness_report(test, test[LABEL].to_numpy(), [0.9, 0.1, 0.9, 0.6, 0.2, 0.1],
                             [SensitiveAttributeConfig(column="age", bins=[30, 50])], threshold=0.5, min_group_size=1,
                             min_group_positives=1)
    assert [g["group"] for g in report["age"]["groups"]] == ["<30", "30-50", ">=50"]
    assert [g["selection_rate"] for g in report["age"]["groups"]] == [0.5, 1.0, 0.0]
    assert report["age"]["disparate_impact"] == 0.0 and report["age"]["equal_opportunity_difference"] == 1.0


def test_a_tpr_over_a_handful_of_positives_is_unmeasured_and_not_bounded():
    # The census-income case: two large groups, but one has 4 positives and one 9; by chance
    # their TPRs are 1.0 and 0.444, which alone would decide the equal-opportunity bound.
    y_true = [1] * 4 + [0] * 96 + [1] * 9 + [0] * 91 + [1] * 40 + [0] * 60
    y_pred = [1] * 4 + [0] * 96 + [1] * 4 + [0] * 5 + [0] * 91 + [1] * 30 + [0] * 10 + [0] * 60
    groups = pd.Series(["tiny"] * 100 + ["small"] * 100 + ["large"] * 100)
    noisy = attribute_fairness(y_true, y_pred, groups, min_group_size=30, min_group_positives=1)
    assert noisy["equal_opportunity_difference"] == pytest.approx(1.0 - 4 / 9)
    result = attribute_fairness(y_true, y_pred, groups, min_group_size=30, min_group_positives=20)
    by_group = {g["group"]: g for g in result["groups"]}
    assert by_group["tiny"]["tpr"] is None and by_group["small"]["tpr"] is None
    assert by_group["tiny"]["positives"] == 4 and by_group["large"]["tpr"] == pytest.approx(0.75)
    assert result["equal_opportunity_difference"] is None
    assert result["unmeasured"]["equal_opportunity_difference"] == \
        "fewer than two groups with at least 30 test rows and 20 positives"
    assert result["disparate_impact"] is not None   # selection rates need rows, not positives


FAIR_POLICY = Policy(absolute={"roc_auc": {"min": 0.7}},
                     fairness={"min_disparate_impact": 0.8, "max_equal_opportunity_difference": 0.1})


def record(disparate_impact, equal_opportunity_difference):
    return AttributeFairness(
        disparate_impact=disparate_impact, equal_opportunity_difference=equal_opportunity_difference,
        min_group_size=30, groups=[GroupRates("f", 100, 40, selection_rate=0.2, tpr=0.5, fpr=0.1, bounded=True),
                                   GroupRates("m", 100, 40, selection_rate=0.25, tpr=0.55, fpr=0.1, bounded=True)])


def test_gate_bounds_each_sensitive_attribute():
    passed = decide({"roc_auc": 0.8}, None, FAIR_POLICY, fairness={"gender": record(0.85, 0.05)})
    assert passed.passed and {r.name for r in passed.rules} == {
        "roc_auc threshold", "gender disparate impact", "gender equal-opportunity difference"}
    blocked = decide({"roc_auc": 0.8}, ChampionEvaluation(1, {"roc_auc": 0.79}), FAIR_POLICY,
                     fairness={"gender": record(0.85, 0.05), "age": record(0.62, 0.3)})
    assert not blocked.passed
    failed = {r.name: r for r in blocked.rules if not r.passed}
    assert set(failed) == {"age disparate impact", "age equal-opportunity difference"}
    assert failed["age disparate impact"].observed == 0.62 and failed["age disparate impact"].allowed == ">= 0.8"
    assert "f selected 0.200, m selected 0.250" in failed["age disparate impact"].detail
    unmeasured = decide({"roc_auc": 0.8}, None, FAIR_POLICY, fairness={"gender": record(None, 0.05)})
    assert not unmeasured.passed and "could not be measured" in unmeasured.reasons[0]
    # bounds of None report fairness without gating on it
    report_only = Policy(absolute={}, fairness={"min_disparate_impact": None, "max_equal_opportunity_difference": None})
    assert decide({}, None, report_only, fairness={"age": record(0.1, 0.9)}).rules == []


def test_gate_policy_reads_the_fairness_section_of_the_config():
    policy = Policy.from_config(load_config(None, {"gate.fairness.min_disparate_impact": 0.9}).gate.model_dump())
    assert policy.fairness == {"min_disparate_impact": 0.9, "max_equal_opportunity_difference": 0.1}
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_config(None, {"fairness.sensitive_attributes": [{"column": "age", "bins": [50, 30]}]})
    with pytest.raises(ConfigError, match="sensitive attributes repeated"):
        load_config(None, {"fairness.sensitive_attributes": [{"column": "age"}, {"column": "age"}]})


def test_sensitive_columns_travel_in_the_splits_even_when_not_features():
    frame = generate_applicants(rows=400, seed=3)
    spec = build_feature_spec(frame, "defaulted", 1, ["applicant_id", "gender"], "application_date")
    assert "gender" not in spec.columns and "age" in spec.columns
    splits = split_dataset(frame, spec, 0.2, 0.2, 42, extra_columns=["gender", "age"])
    assert list(splits.test.columns) == spec.columns + ["gender", LABEL]
    assert set(splits.test["gender"]) == {"female", "male"}
    with pytest.raises(DataError, match=r"columns \['ethnicity'\] asked for beside the model columns are not in"):
        split_dataset(frame, spec, 0.2, 0.2, 42, extra_columns=["ethnicity"])


def test_the_dag_s_test_split_carries_sensitive_columns_the_model_does_not_use():
    # Preprocess is cached and takes no fairness setting: every raw column rides in its test split,
    # where evaluate measures fairness, whichever attributes the run names.
    from tollgate.settings import PreprocessSettings
    from tollgate.steps.preprocess import run_preprocess

    frame = generate_applicants(rows=400, seed=3)
    config = load_config(None, {"data.drop": ["gender"]})
    spec, plan = run_preprocess(frame, PreprocessSettings.from_config(config))
    splits = plan.take(frame)
    assert "gender" not in spec.columns and "gender" not in splits.train.columns
    assert set(splits.test["gender"]) == {"female", "male"}
