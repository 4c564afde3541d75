"""Multiclass on small crafted tables: class order, labels as text or integers, rare classes, the split,
metrics against scikit-learn's own, every family exported, label validation, fairness, the gate, and
the in-process server's answers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from tests.conftest import evaluation_record
from tollgate.config import MULTICLASS_METRIC_NAMES, FairnessConfig, ValidationConfig, load_config
from tollgate.errors import ConfigError, DataError
from tollgate.records import ChampionEvaluation, DataSchema
from tollgate.steps.candidates import CandidateSpec
from tollgate.steps.evaluate import evaluate_champion, evaluate_model, multiclass_metrics
from tollgate.steps.gate import Policy, decide
from tollgate.steps.labels import class_order, encode_labels
from tollgate.steps.preprocess import LABEL, build_feature_spec, split_dataset
from tollgate.steps.train import train_candidate
from tollgate.steps.validate import infer_data_schema, validate


def crafted(labels: list, rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A table whose label depends on ``score`` and ``kind``; ``labels`` are cycled by score band."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=rows)
    kind = rng.choice(["a", "b", "c"], rows)
    band = np.digitize(score + 0.8 * (kind == "a") + rng.normal(0, 0.5, rows), [-0.5, 0.5])
    label = np.asarray(labels, dtype=object)[band % len(labels)]
    return pd.DataFrame({"score": score, "noise": rng.normal(size=rows), "kind": kind,
                         "group": rng.choice(["x", "y"], rows), "label": label})


def spec_and_splits(frame: pd.DataFrame, task: str = "auto"):
    spec = build_feature_spec(frame, "label", 1, [], None, task=task)
    return spec, split_dataset(frame, spec, 0.2, 0.2, 42, extra_columns=["group"])


# -- class order and the split ---------------------------------------------------------------------


def test_text_labels_are_ordered_as_text_and_recorded_in_the_schema():
    spec, splits = spec_and_splits(crafted(["setosa", "virginica", "versicolor"]))
    assert spec.task == "multiclass" and spec.classes == ["setosa", "versicolor", "virginica"]
    assert spec.schema["task"] == "multiclass" and spec.schema["classes"] == spec.classes
    assert spec.positive_label is None
    for part in (splits.train, splits.validation, splits.test):
        assert sorted(part[LABEL].unique()) == [0, 1, 2]


def test_integer_labels_are_ordered_numerically_and_encoded_by_position():
    frame = crafted([10, 2, 1])
    assert class_order(frame["label"]) == [1, 2, 10]  # not "1" < "10" < "2"
    assert encode_labels(pd.Series([10, 1, 2, 10.0]), [1, 2, 10]).tolist() == [2, 0, 1, 2]
    # A CSV may read the same labels as text: they still find their class.
    assert encode_labels(pd.Series(["10", "1"]), [1, 2, 10]).tolist() == [2, 0]
    spec, _ = spec_and_splits(frame)
    assert spec.classes == [1, 2, 10]


def test_two_classes_stay_binary_under_auto_and_become_multiclass_on_request():
    frame = crafted(["no", "yes"])
    assert build_feature_spec(frame, "label", "yes", [], None).task == "binary"
    forced = build_feature_spec(frame, "label", "yes", [], None, task="multiclass")
    assert forced.task == "multiclass" and forced.classes == ["no", "yes"]


def test_a_rare_class_reaches_every_split_and_is_measured():
    frame = crafted(["a", "b"], rows=800)
    frame.loc[frame.index[:24], "label"] = "rare"  # 3% of rows
    spec, splits = spec_and_splits(frame)
    assert spec.classes == ["a", "b", "rare"]
    for part in (splits.train, splits.validation, splits.test):
        assert (part[LABEL] == 2).sum() >= 4
    trained = train_candidate(splits.train, splits.validation,
                              CandidateSpec("lr", "logistic_regression", {"max_iter": 300}), spec)
    from tollgate.serving.runtime import OnnxModel

    result = evaluate_model(OnnxModel(trained.onnx, spec.schema), splits.test, spec.columns, classes=spec.classes)
    rare = result["per_class"][2]
    assert rare.class_label == "rare" and rare.support == int((splits.test[LABEL] == 2).sum())


def test_a_class_with_two_rows_stops_the_run_with_the_reason():
    frame = crafted(["a", "b"], rows=400)
    frame.loc[frame.index[:2], "label"] = "rare"
    spec = build_feature_spec(frame, "label", 1, [], None)
    with pytest.raises(DataError, match="fewer than 3 rows") as raised:
        split_dataset(frame, spec, 0.2, 0.2, 42)
    assert "'rare'" in str(raised.value) and "merge" in str(raised.value)


def test_a_class_with_three_rows_reaches_every_split():
    # Proportional shares would give it 0.6 test and 0.6 validation rows: each split gets one anyway,
    # taken from the large classes, which stay within two rows of their shares.
    frame = crafted(["a", "b"], rows=400)
    frame.loc[frame.index[:3], "label"] = "rare"
    spec = build_feature_spec(frame, "label", 1, [], None)
    splits = split_dataset(frame, spec, 0.2, 0.2, 42)
    rare = spec.classes.index("rare")
    assert [int((part[LABEL] == rare).sum()) for part in (splits.train, splits.validation, splits.test)] == [1, 1, 1]
    assert [len(part) for part in (splits.train, splits.validation, splits.test)] == [240, 80, 80]
    for index, label in enumerate(spec.classes):
        if label != "rare":
            total = int((frame["label"] == label).sum())
            for part in (splits.validation, splits.test):
                assert abs(int((part[LABEL] == index).sum()) - total * 80 / 400) <= 2, (label, len(part))


def test_more_rare_classes_than_test_rows_stops_the_run_with_the_reason():
    # 20 classes of 3 rows and 12-row validation and test splits: not every class can have a row in each.
    frame = crafted(["a"], rows=60)
    frame["label"] = [f"c{i:02d}" for i in range(20)] * 3
    spec = build_feature_spec(frame, "label", 1, [], None)
    with pytest.raises(DataError, match=r"out of the validation split: they are too rare for split.test_size 0.2") as raised:
        split_dataset(frame, spec, 0.2, 0.2, 42)
    assert "merge" in str(raised.value)


# -- metrics ---------------------------------------------------------------------------------------


def test_multiclass_metrics_equal_scikit_learns():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 4)) + 1.5 * np.eye(4)[y]
    proba = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    metrics = multiclass_metrics(y, proba)
    assert tuple(metrics) == MULTICLASS_METRIC_NAMES  # what gate.multiclass and the selector accept
    exact = proba.astype(np.float64) / proba.astype(np.float64).sum(axis=1, keepdims=True)
    assert metrics["roc_auc_ovr_macro"] == pytest.approx(roc_auc_score(y, exact, multi_class="ovr", average="macro"))
    assert metrics["roc_auc_ovr_weighted"] == pytest.approx(
        roc_auc_score(y, exact, multi_class="ovr", average="weighted"))
    assert metrics["f1_macro"] == pytest.approx(f1_score(y, proba.argmax(axis=1), average="macro"))
    assert metrics["log_loss"] == pytest.approx(log_loss(y, exact))
    assert metrics["accuracy"] == pytest.approx((proba.argmax(axis=1) == y).mean())


@pytest.mark.parametrize("family, params", [("logistic_regression", {"max_iter": 300}),
                                            ("hist_gradient_boosting", {"max_iter": 15}),
                                            ("random_forest", {"n_estimators": 15})])
def test_every_family_exports_its_native_multiclass_form(family, params):
    spec, splits = spec_and_splits(crafted(["low", "mid", "high"]))
    trained = train_candidate(splits.train, splits.validation,
                              CandidateSpec(family, family, {**params, "random_state": 0}), spec,
                              reference=splits.test)
    estimator = trained.model.steps[-1][1]
    assert list(estimator.classes_) == [0, 1, 2]
    from tollgate.serving.runtime import OnnxModel

    graph = OnnxModel(trained.onnx, spec.schema).predict_proba(splits.test)
    assert graph.shape == (len(splits.test), 3) and trained.reference_proba.shape == graph.shape
    assert np.abs(graph - trained.reference_proba).max() <= 1e-5
    assert set(trained.validation_metrics) >= {"roc_auc_ovr_macro", "f1_macro", "log_loss"}


# -- label validation ------------------------------------------------------------------------------


def _reference(frame: pd.DataFrame) -> DataSchema:
    return infer_data_schema(frame, "label", 1, [])


def test_a_class_that_appears_or_disappears_is_an_anomaly_with_its_own_severity():
    reference = _reference(crafted(["a", "b", "c"], seed=1))
    gone = crafted(["a", "b"], seed=2)
    report = validate(gone, reference, target="label", positive_label=1, min_rows=10)
    checks = {a.check: a for a in report.anomalies}
    assert checks["label_class_disappeared"].blocking and "['c']" in checks["label_class_disappeared"].observed
    new = crafted(["a", "b", "c"], seed=2)
    new.loc[new.index[:30], "label"] = "d"
    settings = ValidationConfig(severity={"label_class_appeared": "warning"})
    report = validate(new, reference, target="label", positive_label=1, min_rows=10, settings=settings)
    appeared = next(a for a in report.anomalies if a.check == "label_class_appeared")
    assert not appeared.blocking and "'d'" in appeared.observed and "30 rows" in appeared.observed


def test_label_drift_is_measured_on_class_shares():
    reference_frame = crafted(["a", "b", "c"], seed=1)
    reference = _reference(reference_frame)
    same = validate(crafted(["a", "b", "c"], seed=2), reference, target="label", positive_label=1, min_rows=10)
    assert not [a for a in same.anomalies if a.check.startswith("label_")]
    assert [d.column for d in same.drift if d.column == "label"] == ["label"]
    shifted = reference_frame.copy()
    shifted.loc[shifted.index[:300], "label"] = "c"
    report = validate(shifted, reference, target="label", positive_label=1, min_rows=10)
    drift = next(a for a in report.anomalies if a.check == "label_drift")
    assert not drift.blocking and "l-infinity" in drift.observed


def test_binary_task_still_refuses_three_classes():
    report = validate(crafted(["a", "b", "c"]), None, target="label", positive_label="a", min_rows=10, task="binary")
    refused = next(a for a in report.anomalies if a.check == "unknown_labels")
    assert refused.blocking and "data.task is binary" in refused.allowed
    assert validate(crafted(["a", "b", "c"]), None, target="label", positive_label="a", min_rows=10).passed


# -- fairness, champion, gate, config --------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    spec, splits = spec_and_splits(crafted(["low", "mid", "high"], rows=900))
    result = train_candidate(splits.train, splits.validation,
                             CandidateSpec("lr", "logistic_regression", {"max_iter": 300}), spec)
    from tollgate.serving.runtime import OnnxModel

    return spec, splits, OnnxModel(result.onnx, spec.schema), result


def test_fairness_is_one_vs_rest_for_named_classes_or_says_it_was_skipped(trained):
    spec, splits, graph, _ = trained
    named = evaluate_model(graph, splits.test, spec.columns, classes=spec.classes,
                           fairness=FairnessConfig(sensitive_attributes=[{"column": "group"}], classes=["high", "nope"]))
    assert list(named["fairness"]) == ["group (class high)"]
    record = named["fairness"]["group (class high)"]
    predicted_high = graph.predict_proba(splits.test).argmax(axis=1) == spec.classes.index("high")
    group_x = (splits.test["group"] == "x").to_numpy()
    rate_x = next(g["selection_rate"] for g in record["groups"] if g["group"] == "x")
    assert rate_x == pytest.approx(predicted_high[group_x].mean())
    assert "['nope'] are not classes of this model" in named["fairness_skipped"]
    none = evaluate_model(graph, splits.test, spec.columns, classes=spec.classes,
                          fairness=FairnessConfig(sensitive_attributes=[{"column": "group"}], classes=[]))
    assert none["fairness"] == {} and "binary-only measures and were skipped" in none["fairness_skipped"]


def test_the_gate_blocks_fairness_bounds_that_would_hold_nothing(trained):
    """A multiclass model whose fairness was skipped (no class, or an unknown one, named) fails the
    "fairness measured" rule while gate.fairness bounds are set; with the bounds null it only reports,
    and with a named class each (attribute, class) pair is bounded like a binary attribute."""
    from tollgate.steps.gate import GatePolicy, run_gate

    spec, splits, graph, _ = trained
    attributes = [{"column": "group"}]

    def gate(classes, bounds=None):
        scored = evaluate_model(graph, splits.test, spec.columns, classes=spec.classes,
                                fairness=FairnessConfig(sensitive_attributes=attributes, classes=classes))
        evaluation = evaluation_record({**scored, "task": "multiclass"})
        config = load_config(None, {"gate.multiclass.absolute": {"roc_auc_ovr_macro": {"min": 0.5}},
                                    **({"gate.fairness": bounds} if bounds is not None else {})})
        return run_gate(evaluation, GatePolicy.from_config(config.gate.model_dump()))

    unnamed = gate([])
    assert not unnamed.passed
    assert [r.name for r in unnamed.rules if not r.passed] == ["fairness measured"]
    (reason,) = unnamed.reasons
    assert reason.startswith("fairness was not measured as gate.fairness.max_equal_opportunity_difference and "
                             "gate.fairness.min_disparate_impact require: selection rate, TPR, FPR")
    assert "name classes in fairness.classes" in reason and reason.endswith("set those bounds to null to only report "
                                                                            "fairness")
    unknown = gate(["high", "nope"])
    assert [r.name for r in unknown.rules if not r.passed] == ["fairness measured"]
    assert "['nope'] are not classes of this model" in unknown.reasons[0]
    # Report only: nothing bounded, nothing blocked; the skip stays in the evaluation.
    reported = gate([], {"min_disparate_impact": None, "max_equal_opportunity_difference": None})
    assert reported.passed and [r.name for r in reported.rules] == ["roc_auc_ovr_macro threshold"]
    # A named class is measured and bounded: one rule per bound for "group (class high)".
    named = gate(["high"], {"min_disparate_impact": 0.0, "max_equal_opportunity_difference": 1.0})
    assert named.passed
    assert [r.name for r in named.rules] == ["roc_auc_ovr_macro threshold", "group (class high) disparate impact",
                                             "group (class high) equal-opportunity difference"]


def test_champion_is_compared_only_like_with_like(trained):
    spec, splits, graph, _ = trained
    same = evaluate_champion(graph, spec.schema, splits.test, classes=spec.classes)
    assert same.error is None and same.metrics == evaluate_model(graph, splits.test, spec.columns, classes=spec.classes)["metrics"]
    binary_schema = {k: v for k, v in spec.schema.items() if k not in ("task", "classes")}
    assert "champion is a binary model" in evaluate_champion(graph, binary_schema, splits.test,
                                                             classes=spec.classes).error
    other = {**spec.schema, "classes": ["high", "low", "mid", "extra"]}
    assert "not comparable" in evaluate_champion(graph, other, splits.test, classes=spec.classes).error
    assert "champion is a multiclass model" in evaluate_champion(graph, spec.schema, splits.test).error


def test_gate_uses_the_multiclass_thresholds_for_a_multiclass_model():
    config = load_config(None, {"gate.multiclass.absolute": {"f1_macro": {"min": 0.5}},
                                "gate.multiclass.max_degradation": {"roc_auc_ovr_macro": 0.01}})
    gate = config.gate.model_dump()
    policy = Policy.from_config(gate, task="multiclass")
    assert set(policy.absolute) == {"f1_macro"}  # a dotted override replaces the mapping
    assert Policy.from_config(gate).absolute.keys() == {"roc_auc", "pr_auc"}  # binary unchanged
    decision = decide({"f1_macro": 0.6, "roc_auc_ovr_macro": 0.80}, ChampionEvaluation(3, {"roc_auc_ovr_macro": 0.82,
                                                                                 "f1_macro": 0.6}), policy)
    assert not decision.passed and "roc_auc_ovr_macro 0.8000 is 0.0200 worse than champion v3" in decision.reasons[0]
    assert [r.metric for r in decision.rules] == ["f1_macro", "roc_auc_ovr_macro"]
    defaults = Policy.from_config(load_config(None).gate.model_dump(), task="multiclass")
    assert defaults.absolute == {"roc_auc_ovr_macro": {"min": 0.7, "max": None}}


def test_config_keeps_binary_and_multiclass_metrics_apart():
    with pytest.raises(ConfigError, match="multiclass metrics go under gate.multiclass"):
        load_config(None, {"gate.absolute": {"f1_macro": {"min": 0.5}}})
    with pytest.raises(ConfigError, match="unknown multiclass metric"):
        load_config(None, {"gate.multiclass.absolute": {"pr_auc": {"min": 0.5}}})
    with pytest.raises(ConfigError, match="data.task"):
        load_config(None, {"data.task": "ternary"})


# -- the server, in process ------------------------------------------------------------------------


def test_server_answers_every_class_in_class_order(trained, tmp_path):
    from kserve.protocol.infer_type import InferInput, InferRequest

    from tollgate.registry import METADATA_FILE, ONNX_FILE, SCHEMA_FILE
    from tollgate.serving.model import TollgateModel

    spec, splits, graph, result = trained
    (tmp_path / ONNX_FILE).write_bytes(result.onnx)
    (tmp_path / SCHEMA_FILE).write_text(json.dumps(spec.schema))
    (tmp_path / METADATA_FILE).write_text(json.dumps({"version": 4, "features": {"classes": spec.classes}}))
    model = TollgateModel("m", tmp_path)
    model.load()
    rows = splits.test[spec.columns].head(5)
    expected = graph.predict_proba(rows).astype(np.float64)
    records = rows.to_dict("records")
    v1 = model.predict(model.preprocess({"instances": records}))
    assert [p["predicted_class"] for p in v1["predictions"]] == [spec.classes[i] for i in expected.argmax(axis=1)]
    assert [list(p["probabilities"]) for p in v1["predictions"]] == [spec.classes] * 5
    assert [list(p["probabilities"].values()) for p in v1["predictions"]] == expected.tolist()
    inputs = [InferInput(name=c, shape=[5], datatype="FP64" if c in spec.numeric else "BYTES",
                         data=rows[c].astype(float if c in spec.numeric else str).tolist()) for c in spec.columns]
    response = model.predict(model.preprocess(InferRequest(model_name="m", infer_inputs=inputs)))
    outputs = {o.name: o for o in response.outputs}
    np.testing.assert_array_equal(outputs["probabilities"].as_numpy(), expected)
    assert outputs["probabilities"].shape == [5, 3]
    assert json.loads(outputs["probabilities"].parameters["classes"]) == spec.classes
    assert model.get_output_types()[1] == {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]}
    assert model.metadata_parameters() == {"task": "multiclass", "classes": spec.classes}


def test_report_shows_the_k_by_k_matrix_per_class_curves_and_table(trained):
    from tollgate.steps.report import ReportInputs, render_report, text_summary

    spec, splits, graph, _ = trained
    evaluation = evaluation_record({"candidate_id": "lr", "family": "logistic_regression",
                                    **evaluate_model(graph, splits.test, spec.columns, classes=spec.classes,
                                                     fairness=FairnessConfig(sensitive_attributes=[{"column": "group"}]))})
    inputs = ReportInputs(model_name="m", evaluation=evaluation)
    page = render_report(inputs)
    assert 'alt="confusion matrix"' in page and 'alt="precision-recall per class"' in page
    assert page.count("<th>high</th>") == 1  # the confusion table's header, in class order
    assert "<th>ROC AUC (one-vs-rest)</th>" in page and "f1_macro" in page
    assert "binary-only measures and were skipped" in page
    assert "macro one-vs-rest ROC AUC" in page
    lines = text_summary(inputs)
    assert any("3 classes" in line and "roc_auc_ovr_macro" in line for line in lines)
    assert any(line.startswith("fairness skipped") for line in lines)


def _served(spec, onnx: bytes, directory):
    from tollgate.registry import ONNX_FILE, SCHEMA_FILE
    from tollgate.serving.model import TollgateModel

    (directory / ONNX_FILE).write_bytes(onnx)
    (directory / SCHEMA_FILE).write_text(json.dumps(spec.schema))
    model = TollgateModel("m", directory)
    model.load()
    return model


def test_report_shows_class_names_as_text_in_tables_and_plots(trained):
    """Class names are label values from the user's data: markup, template syntax and a mathtext '$'
    in one reach the page as text (the per-class table, the confusion table, the plots' ticks)."""
    from html import unescape

    from tollgate.steps.report import ReportInputs, render_report

    spec, splits, graph, _ = trained
    hostile = {str(c): f"{c} <script>{{{{ x }}}}</script> & 'q' \"dq\" $\\frac{{a$" for c in spec.classes}
    candidate = {"candidate_id": "lr", "family": "logistic_regression",
                 **evaluate_model(graph, splits.test, spec.columns, classes=spec.classes)}
    candidate["classes"] = [hostile[str(c)] for c in candidate["classes"]]
    for rows in ("per_class", "pr_per_class"):
        candidate[rows] = [replace(row, class_label=hostile[str(row.class_label)]) for row in candidate[rows]]
    page = render_report(ReportInputs(model_name="m", evaluation=evaluation_record(candidate)))
    assert "<script" not in page and page.count('alt="confusion matrix"') == 1
    for name in hostile.values():
        # once in the class list, once in the per-class table, once as a confusion-table header and row
        assert unescape(page).count(name) == 4
        assert f"<th>{name.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;').replace(chr(39), '&#39;').replace(chr(34), '&#34;')}</th>" in page


def test_integer_classes_are_served_as_int64_in_numeric_order(tmp_path):
    from kserve.protocol.infer_type import InferInput, InferRequest

    spec, splits = spec_and_splits(crafted([10, 2, 1]))
    result = train_candidate(splits.train, splits.validation,
                             CandidateSpec("lr", "logistic_regression", {"max_iter": 300}), spec)
    model = _served(spec, result.onnx, tmp_path)
    rows = splits.test[spec.columns].head(4)
    inputs = [InferInput(name=c, shape=[4], datatype="FP64" if c in spec.numeric else "BYTES",
                         data=rows[c].astype(float if c in spec.numeric else str).tolist()) for c in spec.columns]
    response = model.predict(model.preprocess(InferRequest(model_name="m", infer_inputs=inputs)))
    outputs = {o.name: o for o in response.outputs}
    assert outputs["predicted_class"].datatype == "INT64"
    proba = outputs["probabilities"].as_numpy()
    assert outputs["predicted_class"].as_numpy().tolist() == [[1, 2, 10][i] for i in proba.argmax(axis=1)]
    v1 = model.predict(model.preprocess({"instances": rows.to_dict("records")}))
    assert list(v1["predictions"][0]["probabilities"]) == ["1", "2", "10"]  # JSON keys are text, in class order


def test_infra_validation_refuses_an_answer_in_another_class_order(trained):
    from tollgate.serving.client import Predictions
    from tollgate.steps.infra_validate import _compare_multiclass

    spec, splits, graph, _ = trained
    sample = splits.test[spec.columns].head(6)
    expected = graph.predict_proba(sample).astype(np.float64)
    classes = [spec.classes[i] for i in expected.argmax(axis=1)]
    good = Predictions("m", "1", classes, expected.max(axis=1).tolist(), expected.tolist(), list(spec.classes))
    assert _compare_multiclass(spec, sample, {"grpc": good}, expected, 0.0)["passed"]
    shuffled = Predictions("m", "1", classes, expected.max(axis=1).tolist(), expected.tolist(),
                           list(reversed(spec.classes)))
    outcome = _compare_multiclass(spec, sample, {"grpc": shuffled}, expected, 0.0)
    assert not outcome["passed"] and "class order" in outcome["reason"]
    off = Predictions("m", "1", classes, expected.max(axis=1).tolist(), (expected + 1e-6).tolist(), None)
    outcome = _compare_multiclass(spec, sample, {"rest-v2": off}, expected, 0.0)
    assert not outcome["passed"] and "differ from in-process onnxruntime" in outcome["reason"]
