"""Permutation importance is bounded and says what it bounded (issue 12, "Bounds").

A 400-row, 10,027-column file ran evaluate's permutation importance for over 900 s. These tests
run the evaluate step's own functions on real trained graphs: the default data (where every
column is permuted and the numbers equal scikit-learn's ``permutation_importance``) and a wide
file of 2,000 columns (where the column cap, the row sample and the time budget apply and are
recorded in ``importance_bounds``, the report and the text summary).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tests.conftest import evaluation_record
from tollgate.config import ImportanceConfig
from tollgate.records import ImportanceBounds
from tollgate.serving.runtime import OnnxModel
from tollgate.steps import evaluate
from tollgate.steps.candidates import CandidateSpec
from tollgate.steps.evaluate import evaluate_model, top_feature_importance
from tollgate.steps.preprocess import LABEL, build_feature_spec, split_dataset
from tollgate.steps.report import ReportInputs, render_report, text_summary
from tollgate.steps.train import train_candidate

WIDE_ROWS, WIDE_COLUMNS = 300, 2000


def wide_table(rows: int, columns: int, seed: int = 0) -> pd.DataFrame:
    """``columns - 1`` numeric features and the label; the label depends on f3 and f17 only."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, columns - 1)).astype(np.float32)
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(columns - 2)] + ["segment"])
    frame["segment"] = rng.choice(["a", "b", "c"], size=rows)
    logit = 3.0 * values[:, 3] - 3.0 * values[:, 17]
    frame["y"] = (logit + 0.5 * rng.normal(size=rows) > 0.0).astype(int)
    return frame


@pytest.fixture(scope="module")
def wide():
    frame = wide_table(WIDE_ROWS, WIDE_COLUMNS)
    spec = build_feature_spec(frame, "y", 1, [], None)
    splits = split_dataset(frame, spec, 0.3, 0.2, 42)
    # L1: with 180 training rows and 2,000 columns an L2 model learns noise; this one finds f3 and f17.
    trained = train_candidate(splits.train, splits.validation, CandidateSpec(
        "l1", "logistic_regression", {"solver": "liblinear", "l1_ratio": 1.0, "C": 0.2}), spec)
    return OnnxModel(trained.onnx, spec.schema), splits.test, spec.columns


@pytest.fixture(scope="module")
def default_data():
    from tollgate.data.builtin import generate_applicants

    frame = generate_applicants(rows=2000, seed=7)
    spec = build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date")
    splits = split_dataset(frame, spec, 0.3, 0.2, 42)
    trained = train_candidate(splits.train, splits.validation,
                              CandidateSpec("hgb", "hist_gradient_boosting", {"max_iter": 30}), spec)
    return OnnxModel(trained.onnx, spec.schema), splits.test, spec.columns


def _without_timing(bounds: ImportanceBounds) -> ImportanceBounds:
    return replace(bounds, seconds=0.0)


def test_unbounded_importance_equals_scikit_learns_permutation_importance(default_data):
    """Every column permuted: the same draws and scores as sklearn.inspection.permutation_importance."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.inspection import permutation_importance

    model, test, columns = default_data

    class Graph(ClassifierMixin, BaseEstimator):
        def __init__(self, graph=None):
            self.graph = graph

        def fit(self, X, y=None):  # pragma: no cover - never refitted
            raise NotImplementedError

        def __sklearn_is_fitted__(self):
            return True

        @property
        def classes_(self):
            return np.arange(2)

        def predict_proba(self, X):
            return np.asarray(self.graph.predict_proba(X), dtype=np.float64)

    top, bounds = top_feature_importance(model, test, columns, top=len(columns), seed=3)
    sample = test.sample(n=min(len(test), ImportanceConfig().max_rows), random_state=3)
    reference = permutation_importance(Graph(model), sample[columns], sample[LABEL].to_numpy(), scoring="roc_auc",
                                       n_repeats=3, random_state=3)
    expected = {name: (mean, std) for name, mean, std in
                zip(columns, reference.importances_mean, reference.importances_std, strict=True)}
    assert len(top) == len(columns)
    for item in top:
        assert item.importance == pytest.approx(expected[item.feature][0], abs=1e-12)
        assert item.std == pytest.approx(expected[item.feature][1], abs=1e-12)
    assert [item.importance for item in top] == sorted((item.importance for item in top), reverse=True)
    assert _without_timing(bounds) == ImportanceBounds(
        rows_sampled=len(test), rows_total=len(test), features_permuted=len(columns), features_total=len(columns),
        selection="all", max_features=200, repeats=3, time_budget_seconds=300.0, budget_hit=False, seconds=0.0)


def test_a_wide_file_permutes_at_most_max_features_columns_and_records_it(wide):
    model, test, columns = wide
    evaluation = evaluate_model(model, test, columns, importance=ImportanceConfig(max_features=40))
    bounds = evaluation["importance_bounds"]
    assert _without_timing(bounds) == ImportanceBounds(
        rows_sampled=len(test), rows_total=len(test), features_permuted=40, features_total=WIDE_COLUMNS - 1,
        selection="screened", max_features=40, repeats=3, time_budget_seconds=300.0, budget_hit=False, seconds=0.0)
    top = [item.feature for item in evaluation["importance"]]
    # The screen permutes the columns the predictions move with: the two the label depends on lead.
    assert set(top[:2]) == {"f3", "f17"}
    # Deterministic for a seed: the same columns, numbers and bounds again.
    again = evaluate_model(model, test, columns, importance=ImportanceConfig(max_features=40))
    assert again["importance"] == evaluation["importance"]
    assert _without_timing(again["importance_bounds"]) == _without_timing(bounds)


def test_rows_are_sampled_to_max_rows(wide):
    model, test, columns = wide
    _, bounds = top_feature_importance(model, test, columns, settings=ImportanceConfig(max_rows=50, max_features=5))
    assert (bounds.rows_sampled, bounds.rows_total, bounds.features_permuted) == (50, len(test), 5)


def test_a_spent_time_budget_stops_between_runs_and_keeps_a_prefix_of_the_same_results(wide, monkeypatch):
    model, test, columns = wide
    settings = ImportanceConfig(max_features=12)
    full, full_bounds = top_feature_importance(model, test, columns, top=12, settings=settings)
    assert full_bounds.features_permuted == 12 and not full_bounds.budget_hit

    # Two columns (x 3 repeats) per stacked run, and a clock that moves 1 s per reading: the budget of
    # 3 s is spent after the baseline and two runs.
    monkeypatch.setattr(evaluate, "IMPORTANCE_STACK_CELLS", len(test) * len(columns) * 6)
    ticks = iter(range(10_000))
    monkeypatch.setattr(evaluate.time, "monotonic", lambda: float(next(ticks)))
    partial, bounds = top_feature_importance(model, test, columns, top=12,
                                             settings=ImportanceConfig(max_features=12, time_budget_seconds=3))
    assert bounds.budget_hit and bounds.features_permuted == 4 and bounds.time_budget_seconds == 3
    assert bounds.selection == "screened" and bounds.features_total == len(columns)
    by_feature = {item.feature: item for item in full}
    assert len(partial) == 4 and all(item == by_feature[item.feature] for item in partial)

    line = next(line for line in text_summary(ReportInputs(
        model_name="m", evaluation=evaluation_record({"candidate_id": "l1", "metrics": {"roc_auc": 0.9, "pr_auc": 0.9},
                                                      "importance": partial, "importance_bounds": bounds})))
        if line.startswith("importance:"))
    assert line == (f"importance: 4 of {len(columns)} columns permuted (at most 12: those the predictions vary with "
                    f"most), on {len(test)} of {len(test)} test rows; time budget of 3 s hit "
                    "(importance.time_budget_seconds)")


def test_a_budget_spent_before_any_column_is_reported_not_mistaken_for_a_stopped_run(wide):
    model, test, columns = wide
    evaluation = evaluate_model(model, test, columns, importance=ImportanceConfig(time_budget_seconds=1e-9))
    assert evaluation["importance"] == [] and evaluation["importance_bounds"].budget_hit
    assert evaluation["importance_bounds"].features_permuted == 0
    page = render_report(ReportInputs(model_name="m", evaluation=evaluation_record(
        {"candidate_id": "l1", "family": "logistic_regression", **evaluation})))
    assert "No column was permuted within the time budget." in page and "Time budget hit" in page
    assert "the run stopped before the evaluate step" not in page.split('id="importance"')[1].split("</section>")[0]


def test_the_report_and_text_summary_say_what_was_bounded(wide):
    model, test, columns = wide
    evaluation = evaluate_model(model, test, columns, importance=ImportanceConfig(max_features=40, max_rows=60))
    inputs = ReportInputs(model_name="m", evaluation=evaluation_record(
        {"candidate_id": "l1", "family": "logistic_regression", **evaluation}))
    section = render_report(inputs).split('id="importance"')[1].split("</section>")[0]
    assert f"40 of {len(columns)} columns permuted" in section
    assert f"the other {len(columns) - 40} were not measured" in section and "importance.max_features" in section
    assert f"on 60 of {len(test)} test rows (a seeded sample)" in section and 'alt="feature importance"' in section
    assert (f"importance: 40 of {len(columns)} columns permuted (at most 40: those the predictions vary with most), "
            f"on 60 of {len(test)} test rows") in text_summary(inputs)


def test_the_config_section_keeps_its_defaults_and_refuses_unknown_keys():
    from tollgate.config import load_config
    from tollgate.errors import ConfigError

    assert load_config(None, {}).importance == ImportanceConfig()  # the shipped YAML keeps the class's defaults
    with pytest.raises(ConfigError, match="importance.max_featurs"):
        load_config(None, {"importance.max_featurs": 10})
    with pytest.raises(ConfigError, match="importance.max_features"):
        load_config(None, {"importance.max_features": 0})
