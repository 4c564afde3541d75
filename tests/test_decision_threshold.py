"""One decision threshold (``decision_threshold``) for a binary model: its test metrics, fairness,
export and infra-validation checks, and the class a real server process answers with.

The threshold is recorded in the version's input schema; a version without it decides at 0.5.
Ties are positive everywhere: ``P(positive) >= decision_threshold``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from tollgate.config import FairnessConfig, load_config
from tollgate.data.builtin import generate_applicants
from tollgate.errors import ConfigError
from tollgate.serving.runtime import OnnxModel
from tollgate.steps.candidates import CandidateSpec
from tollgate.steps.evaluate import evaluate_champion, evaluate_model
from tollgate.steps.infra_validate import infra_validate, stage_version_dir
from tollgate.steps.preprocess import LABEL, build_feature_spec, split_dataset
from tollgate.steps.train import save_candidate, train_candidate

THRESHOLD = 0.3
MODEL = "credit-default"


# -- configuration --------------------------------------------------------------------------------

def test_the_key_defaults_to_one_half_and_takes_other_values(tmp_path):
    assert load_config().decision_threshold == 0.5
    path = tmp_path / "my.yaml"
    path.write_text(f"decision_threshold: {THRESHOLD}\n")
    assert load_config(path).decision_threshold == THRESHOLD
    for bad in ("0", "1", "1.5"):
        path.write_text(f"decision_threshold: {bad}\n")
        with pytest.raises(ConfigError, match="decision_threshold"):
            load_config(path)


def test_an_old_config_with_fairness_threshold_gets_one_error_naming_the_new_key(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("fairness:\n  threshold: 0.4\n  min_group_size: 30\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    lines = str(error.value).splitlines()
    assert len(lines) == 2, lines  # the heading and exactly one problem
    assert "fairness.threshold was replaced by the top-level decision_threshold" in lines[1]
    assert "0.4" in lines[1]
    # Set by a command-line override, the message blames the override, not the defaults.
    with pytest.raises(ConfigError) as error:
        load_config(None, {"fairness.threshold": 0.4})
    heading, problem = str(error.value).splitlines()
    assert heading == "invalid configuration (command-line options):"
    assert "decision_threshold" in problem and problem.endswith("(set on the command line: fairness.threshold)")


# -- training, evaluation and fairness ------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A logistic-regression candidate trained with decision_threshold 0.3, saved as train leaves it."""
    frame = generate_applicants(rows=1500, seed=99)
    spec = build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date",
                              decision_threshold=THRESHOLD)
    splits = split_dataset(frame, spec, 0.3, 0.2, 0, extra_columns=["gender"])
    result = train_candidate(splits.train, splits.validation,
                             CandidateSpec("logreg", "logistic_regression", {"max_iter": 500}),
                             spec, reference=splits.test)
    directory = tmp_path_factory.mktemp("candidate")
    save_candidate(result, directory)
    return spec, splits, result, directory


def _decided_metrics(y_true, proba, threshold):
    predicted = (proba >= threshold).astype(int)
    return {"accuracy": accuracy_score(y_true, predicted), "precision": precision_score(y_true, predicted),
            "recall": recall_score(y_true, predicted), "f1": f1_score(y_true, predicted)}


def test_the_threshold_is_recorded_in_the_input_schema(trained):
    spec, *_ = trained
    assert spec.schema["decision_threshold"] == THRESHOLD and spec.decision_threshold == THRESHOLD
    assert "decision_threshold" in build_feature_spec(generate_applicants(rows=300, seed=1), "defaulted", 1, [],
                                                      "application_date").schema


def test_train_scores_candidates_at_the_threshold(trained):
    spec, splits, result, _ = trained
    proba = OnnxModel(result.onnx, spec.schema).predict_proba(splits.validation)[:, 1].astype(np.float64)
    expected = _decided_metrics(splits.validation[LABEL].to_numpy(), proba, THRESHOLD)
    for name, value in expected.items():
        assert result.validation_metrics[name] == pytest.approx(value, abs=1e-12), name


def test_evaluate_and_fairness_decide_at_the_models_threshold(trained):
    spec, splits, result, _ = trained
    test = splits.test
    graph = OnnxModel(result.onnx, spec.schema)
    fairness = FairnessConfig(sensitive_attributes=[{"column": "gender"}], min_group_size=1, min_group_positives=1)
    evaluation = evaluate_model(graph, test, spec.columns, fairness=fairness)
    proba = graph.predict_proba(test)[:, 1].astype(np.float64)
    y_true = test[LABEL].to_numpy()
    decided = proba >= THRESHOLD
    # The threshold matters on this data: 0.3 and 0.5 decide differently for some rows.
    assert (decided != (proba >= 0.5)).any()

    assert evaluation["decision_threshold"] == THRESHOLD
    for name, value in _decided_metrics(y_true, proba, THRESHOLD).items():
        assert evaluation["metrics"][name] == pytest.approx(value, abs=1e-12), name
    assert evaluation["confusion_matrix"] == confusion_matrix(y_true, decided.astype(int), labels=[0, 1]).tolist()
    record = evaluation["fairness"]["gender"]
    assert record["threshold"] == THRESHOLD
    for group in record["groups"]:
        rows = (test["gender"].astype(str) == group["group"]).to_numpy()
        assert group["selection_rate"] == pytest.approx(decided[rows].mean(), abs=1e-12), group["group"]

    # An explicit threshold wins over the recorded one (what a caller asks for is what it gets).
    at_half = evaluate_model(graph, test, spec.columns, threshold=0.5)
    assert at_half["decision_threshold"] == 0.5
    assert at_half["metrics"]["recall"] == pytest.approx(recall_score(y_true, proba >= 0.5), abs=1e-12)


def test_a_champion_decides_with_its_own_recorded_threshold_and_an_old_one_at_one_half(trained):
    spec, splits, result, _ = trained
    graph = OnnxModel(result.onnx, spec.schema)
    y_true = splits.test[LABEL].to_numpy()
    proba = graph.predict_proba(splits.test)[:, 1].astype(np.float64)
    recorded = evaluate_champion(graph, spec.schema, splits.test)
    assert recorded.decision_threshold == THRESHOLD and recorded.metrics is not None
    assert recorded.metrics["recall"] == pytest.approx(recall_score(y_true, proba >= THRESHOLD), abs=1e-12)
    old_schema = {k: v for k, v in spec.schema.items() if k != "decision_threshold"}
    old = evaluate_champion(OnnxModel(result.onnx, old_schema), old_schema, splits.test)
    assert old.decision_threshold == 0.5 and old.metrics is not None
    assert old.metrics["recall"] == pytest.approx(recall_score(y_true, proba >= 0.5), abs=1e-12)


# -- the served class, in a real server process -----------------------------------------------------

def _records(frame):
    return [{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else (v.item() if hasattr(v, "item") else v))
             for k, v in row.items()} for row in frame.to_dict("records")]


def _tie_threshold(proba: np.ndarray) -> float:
    """A row's exact probability below 0.5, so that row is a tie and rows between it and 0.5 decide differently."""
    candidates = np.sort(proba[(proba > 0.1) & (proba < 0.45)])
    return float(candidates[len(candidates) // 2])


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded-threshold", "version-without-threshold"])
def test_a_real_server_labels_with_the_threshold_of_the_version_it_serves(trained, tmp_path, recorded):
    from tollgate.serving.client import predict
    from tollgate.serving.process import ServerProcess

    spec, splits, result, directory = trained
    sample = splits.test[spec.columns].head(60).reset_index(drop=True)
    proba = OnnxModel(result.onnx, spec.schema).predict_proba(sample)[:, 1].astype(np.float64)
    tie = _tie_threshold(proba)
    schema = dict(spec.schema)
    if recorded:
        schema["decision_threshold"] = tie
    else:
        del schema["decision_threshold"]
    served_spec = type(spec).from_dict({**spec.to_dict(), "schema": schema})
    version_dir = stage_version_dir(directory, served_spec, tmp_path / "version")
    assert ("decision_threshold" in json.loads((version_dir / "input_schema.json").read_text())) == recorded
    threshold = tie if recorded else 0.5
    expected = [1 if p >= threshold else 0 for p in proba]
    if recorded:
        assert expected[int(np.flatnonzero(proba == tie)[0])] == 1  # the tie is positive
        assert expected != [1 if p > 0.5 else 0 for p in proba]  # and this is not the old argmax rule
    with ServerProcess(version_dir, MODEL, log_path=tmp_path / "server.log") as server:
        server.wait_ready(timeout=60)
        for protocol in ("rest-v1", "rest-v2", "grpc"):
            answer = predict(protocol, server.grpc_url if protocol == "grpc" else server.rest_url, MODEL,
                             _records(sample))
            np.testing.assert_array_equal(np.asarray(answer.probabilities, dtype=np.float64), proba)
            assert answer.classes == expected, protocol


def test_infra_validation_expects_the_versions_threshold(trained, tmp_path):
    """The server and infra-validation's in-process expectation apply the same rule, so a candidate
    whose threshold sits exactly on a sample row's probability still passes."""
    spec, splits, result, directory = trained
    proba = OnnxModel(result.onnx, spec.schema).predict_proba(splits.test.head(16))[:, 1].astype(np.float64)
    schema = {**spec.schema, "decision_threshold": _tie_threshold(proba)}
    tied = type(spec).from_dict({**spec.to_dict(), "schema": schema})
    report = infra_validate(str(directory), splits.test, tied, sample_rows=16, log_dir=tmp_path)
    assert report.passed, report.reason
    assert report.max_abs_difference == {"rest-v2": 0.0, "grpc": 0.0}

    # The comparison it passed is one that blocks: an answer that decides the tied row by the old strict
    # rule (P > threshold), or whose probabilities are off by one part in a million, is refused.
    from tollgate.serving.client import Predictions
    from tollgate.steps.infra_validate import _compare_with_onnxruntime

    version_dir = stage_version_dir(directory, tied, tmp_path / "staged")
    sample = splits.test[spec.columns].head(16)
    tie = schema["decision_threshold"]
    assert (proba == tie).sum() == 1

    def answer(probabilities, strict=False):
        classes = [1 if (p > tie if strict else p >= tie) else 0 for p in proba]
        return Predictions(MODEL, "candidate", classes, [float(p) for p in probabilities])

    assert _compare_with_onnxruntime(version_dir, tied, sample, {"rest-v2": answer(proba), "grpc": answer(proba)},
                                     0.0)["passed"]
    strict = _compare_with_onnxruntime(version_dir, tied, sample,
                                       {"rest-v2": answer(proba), "grpc": answer(proba, strict=True)}, 0.0)
    assert not strict["passed"]
    assert strict["reason"] == "grpc predicted classes differ from in-process onnxruntime"
    off = _compare_with_onnxruntime(version_dir, tied, sample, {"rest-v2": answer(proba + 1e-6)}, 0.0)
    assert not off["passed"]
    assert off["reason"] == ("rest-v2 probabilities differ from in-process onnxruntime on the same bytes by 1e-06 "
                             "(tolerance 0)")


def test_realized_metrics_count_the_classes_the_server_answered():
    """Late labels are scored against what each version decided (its own threshold), not against 0.5."""
    import pandas as pd

    from tollgate.steps.monitor import realized_metrics

    probabilities = [0.35, 0.4, 0.2, 0.8, 0.1, 0.45]
    labels = [1, 1, 0, 1, 0, 0]
    log = pd.DataFrame({"time": pd.Timestamp("2026-11-21T10:00:00"), "request_id": [f"r{i}" for i in range(6)],
                        "row": 0, "model_version": "3", "error": None, "output.probability": probabilities,
                        # served by a version with decision_threshold 0.3
                        "output.predicted_class": [1 if p >= THRESHOLD else 0 for p in probabilities]})
    truth = pd.DataFrame({"request_id": [f"r{i}" for i in range(6)], "label": labels})
    [entry] = realized_metrics(log, truth, 1)
    served = [1 if p >= THRESHOLD else 0 for p in probabilities]
    assert entry["metrics"]["recall"] == recall_score(labels, served) == 1.0
    assert entry["metrics"]["accuracy"] == pytest.approx(accuracy_score(labels, served))
    [old_log] = realized_metrics(log.drop(columns=["output.predicted_class"]), truth, 1)
    assert old_log["metrics"]["recall"] == pytest.approx(recall_score(labels, [int(p >= 0.5) for p in probabilities]))
