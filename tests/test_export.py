"""Train exports every candidate to ONNX; what cannot be exported fails train, naming the family and the step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, KBinsDiscretizer, OneHotEncoder

from tollgate.config import MODEL_FAMILIES
from tollgate.data.builtin import generate_applicants
from tollgate.serving.runtime import OnnxModel
from tollgate.serving.schema import model_inputs
from tollgate.steps import train as train_step
from tollgate.steps.candidates import _ESTIMATOR_PATHS, SEEDED_FAMILIES, CandidateSpec, estimator_class
from tollgate.steps.export import ExportError, export_onnx, make_float32_exact
from tollgate.steps.preprocess import LABEL, build_feature_spec, split_dataset
from tollgate.steps.train import build_model, train_candidate

FAMILY_PARAMS = {
    "logistic_regression": {"max_iter": 500},
    "hist_gradient_boosting": {"max_iter": 30, "random_state": 0},
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 5, "random_state": 0},
}


@pytest.fixture(scope="module")
def data():
    frame = generate_applicants(rows=1500, seed=21)
    spec = build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date")
    return spec, split_dataset(frame, spec, 0.2, 0.2, 0)


def test_every_configured_family_is_covered():
    # The config's one list of families, every one with an estimator and a case here.
    assert set(FAMILY_PARAMS) == set(_ESTIMATOR_PATHS) == set(MODEL_FAMILIES)


def test_the_seeded_families_are_exactly_those_whose_estimator_takes_random_state():
    # expand_candidates fills in the seed from this set, without importing the estimators.
    seeded = {family for family in _ESTIMATOR_PATHS if "random_state" in estimator_class(family)().get_params()}
    assert seeded == SEEDED_FAMILIES


def test_grid_points_cross_the_parallel_for_with_their_parameter_types():
    # KFP carries loop items as protobuf Structs, where every number is a double: max_iter=200 would
    # reach the task as 200.0, which scikit-learn refuses. The items carry the parameters as JSON text.
    from google.protobuf import json_format, struct_pb2

    from tollgate.steps.candidates import expand_candidates, grid_point, loop_items

    grid = expand_candidates([{"name": "hgb", "family": "hist_gradient_boosting", "params": {"max_iter": 200},
                               "grid": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15]}}], seed=7)
    for item, point in zip(loop_items(grid), grid, strict=True):
        through_struct = json_format.MessageToDict(json_format.ParseDict(item, struct_pb2.Struct()))
        assert grid_point(through_struct) == point
        assert type(grid_point(through_struct).params["max_iter"]) is int


@pytest.mark.parametrize("family", sorted(FAMILY_PARAMS))
def test_every_family_exports_and_the_graph_matches_the_pipeline(family, data):
    spec, splits = data
    result = train_candidate(splits.train, splits.validation,
                             CandidateSpec(family, family, FAMILY_PARAMS[family]), spec,
                             reference=splits.test)
    graph = OnnxModel(result.onnx, spec.schema)
    proba = graph.predict_proba(splits.test)
    assert proba.dtype == np.float32 and proba.shape == (len(splits.test), 2)
    np.testing.assert_allclose(proba, result.reference_proba, rtol=0, atol=1e-5)
    assert result.export_check.validation.max_abs_difference <= 1e-5
    # Validation metrics (what select ranks by) come from the graph, not the Pipeline.
    from tollgate.steps.evaluate import classification_metrics

    expected = classification_metrics(splits.validation[LABEL].to_numpy(), graph.predict_proba(splits.validation)[:, 1])
    assert result.validation_metrics == expected


def _custom_pipeline(spec, numeric_steps, model):
    preprocess = ColumnTransformer([
        ("numeric", Pipeline(numeric_steps), spec.numeric),
        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), spec.categorical),
    ])
    return Pipeline([("preprocess", preprocess), ("model", model)])


@pytest.mark.parametrize("numeric_steps, step", [
    ([("impute", SimpleImputer()), ("log", FunctionTransformer(np.log1p))],
     "preprocess/numeric/log (FunctionTransformer)"),
    ([("impute", SimpleImputer()), ("bins", KBinsDiscretizer(n_bins=3, quantile_method="averaged_inverted_cdf"))],
     "preprocess/numeric/bins (KBinsDiscretizer)"),
])
def test_a_step_that_does_not_convert_is_named(numeric_steps, step, data):
    from sklearn.ensemble import HistGradientBoostingClassifier

    spec, splits = data
    pipeline = _custom_pipeline(spec, numeric_steps, HistGradientBoostingClassifier(max_iter=5))
    pipeline.fit(model_inputs(splits.train, spec.schema), splits.train[LABEL])
    with pytest.raises(ExportError) as caught:
        export_onnx(pipeline, spec.schema, "hist_gradient_boosting", "hgb[x]")
    message = str(caught.value)
    assert "candidate hgb[x] (hist_gradient_boosting)" in message and f"step '{step}'" in message


def test_a_model_family_that_does_not_convert_is_named(data):
    from sklearn.semi_supervised import LabelSpreading

    spec, splits = data
    pipeline = _custom_pipeline(spec, [("impute", SimpleImputer())], LabelSpreading())
    pipeline.fit(model_inputs(splits.train, spec.schema).head(300), splits.train[LABEL].head(300))
    expected = r"family label_spreading cannot be exported.*step 'model \(LabelSpreading\)'"
    with pytest.raises(ExportError, match=expected):
        export_onnx(pipeline, spec.schema, "label_spreading")


def test_a_step_that_converts_wrongly_fails_train(data, monkeypatch):
    # skl2onnx converts SimpleImputer(add_indicator=True) but the graph then computes something else
    # (its width is wrong); the validation check in train must catch what conversion does not.
    spec, splits = data
    original = train_step.build_preprocessor

    def with_indicator(features, scale=True):
        preprocessor = original(features, scale)
        preprocessor.transformers[0][1].steps[0][1].set_params(add_indicator=True)
        return preprocessor

    monkeypatch.setattr(train_step, "build_preprocessor", with_indicator)
    with pytest.raises(ExportError, match=r"candidate hgb \(hist_gradient_boosting\): the exported ONNX graph"):
        train_candidate(splits.train, splits.validation,
                        CandidateSpec("hgb", "hist_gradient_boosting", {"max_iter": 10}), spec)


def test_tree_thresholds_are_made_float32_exact_without_changing_the_pipeline():
    # A feature whose only values are two neighbouring float32 numbers, the label following it: the
    # tree splits at their float64 midpoint, which rounds (to even) onto the upper value, so a graph
    # holding the rounded threshold sends every upper row down the wrong branch. (The built-in data
    # hit this by chance on one split before make_float32_exact existed: one probability moved 0.025.)
    lower = np.nextafter(np.float32(1.0), np.float32(2.0))  # odd last bit
    upper = np.nextafter(lower, np.float32(2.0))
    rng = np.random.default_rng(0)
    values = rng.choice([lower, upper], 600)
    frame = pd.DataFrame({"x": values.astype(np.float64), "noise": rng.normal(size=600),
                          "y": ((values == upper) ^ (rng.random(600) < 0.1)).astype(int)})
    spec = build_feature_spec(frame, "y", 1, [], None)
    splits = split_dataset(frame, spec, 0.2, 0.2, 42)
    model = build_model(CandidateSpec("h", "hist_gradient_boosting",
                                      {"max_iter": 40, "learning_rate": 0.1, "random_state": 42}), spec)
    model.fit(model_inputs(splits.train, spec.schema), splits.train[LABEL])
    rows = model_inputs(splits.validation, spec.schema)
    before = model.predict_proba(rows)
    naive = OnnxModel(export_onnx(model, spec.schema, "hist_gradient_boosting"), spec.schema).predict_proba(rows)
    make_float32_exact(model)
    np.testing.assert_allclose(model.predict_proba(rows), before, rtol=0, atol=1e-12)
    exact = OnnxModel(export_onnx(model, spec.schema, "hist_gradient_boosting"), spec.schema).predict_proba(rows)
    assert np.abs(naive - before).max() > 1e-3  # the failure this guards against is real on this data
    assert np.abs(exact - before).max() <= 1e-5
