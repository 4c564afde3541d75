"""Infra-validation starts the real model server with the candidate's model.onnx and blocks what it cannot serve."""

from __future__ import annotations

import shutil

import numpy as np
import psutil
import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.steps.candidates import CandidateSpec
from tollgate.steps.infra_validate import infra_validate
from tollgate.steps.preprocess import build_feature_spec, split_dataset
from tollgate.steps.train import REFERENCE_FILE, save_candidate, train_candidate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A candidate directory exactly as the train task leaves it, and the split it was trained on."""
    frame = generate_applicants(rows=1200, seed=4321)
    spec = build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date")
    splits = split_dataset(frame, spec, 0.2, 0.2, 0)
    result = train_candidate(splits.train, splits.validation,
                             CandidateSpec("hgb", "hist_gradient_boosting", {"max_iter": 30, "random_state": 0}), spec,
                             reference=splits.test)
    directory = tmp_path_factory.mktemp("candidate")
    save_candidate(result, directory)
    return directory, spec, splits.test


def _copy(trained, tmp_path):
    directory, spec, test = trained
    candidate = tmp_path / "candidate"
    shutil.copytree(directory, candidate)
    return candidate, spec, test


def test_good_candidate_passes_identical_to_onnxruntime_and_close_to_the_pipeline(trained, tmp_path):
    directory, spec, test = trained
    report = infra_validate(str(directory), test, spec, sample_rows=16, log_dir=tmp_path)
    assert report.passed, report.reason
    assert report.rows == 16
    assert report.max_abs_difference == {"rest-v2": 0.0, "grpc": 0.0}
    agreement = report.sklearn_agreement
    assert agreement.rows == len(test) and agreement.max_abs_difference <= 1e-5
    assert report.warnings == [] and agreement.class_flips == 0
    assert "exactly as in-process onnxruntime" in report.reason
    assert "Uvicorn running on http://127.0.0.1" in (tmp_path / "model-server.log").read_text()


def test_class_flips_are_a_warning_and_a_configured_bound_blocks(trained, tmp_path):
    candidate, spec, test = _copy(trained, tmp_path)
    # A reference whose first row sits on the other side of the threshold: one flip.
    reference = np.load(candidate / REFERENCE_FILE)
    reference[0] = reference[0, ::-1] if reference[0, 1] != reference[0, 0] else [0.4, 0.6]
    np.save(candidate / REFERENCE_FILE, reference)
    warned = infra_validate(str(candidate), test, spec, sample_rows=4, sklearn_tolerance=1.0)
    assert warned.passed, warned.reason
    assert warned.sklearn_agreement.class_flips == 1
    assert "1 of" in warned.warnings[0] and "change class" in warned.warnings[0]
    blocked = infra_validate(str(candidate), test, spec, sample_rows=4, sklearn_tolerance=1.0, max_class_flips=0)
    assert not blocked.passed and "max_class_flips is 0" in blocked.reason
    drifted = infra_validate(str(candidate), test, spec, sample_rows=4)
    assert not drifted.passed and "differs from the scikit-learn Pipeline" in drifted.reason


def test_reference_of_another_split_is_refused(trained, tmp_path):
    directory, spec, test = trained
    report = infra_validate(str(directory), test.head(50), spec, sample_rows=4)
    assert not report.passed and "belongs to another split" in report.reason


def test_broken_graph_is_blocked(trained, tmp_path):
    candidate, spec, test = _copy(trained, tmp_path)
    (candidate / "model.onnx").write_bytes(b"this is not a graph")
    report = infra_validate(str(candidate), test, spec, sample_rows=4, ready_timeout=60)
    assert not report.passed
    assert "did not become ready" in report.reason
    assert "onnxruntime cannot load the graph" in report.reason


def test_graph_of_another_schema_is_blocked(trained, tmp_path):
    # Another model's graph: onnxruntime loads it, but it does not take this schema's columns.
    candidate, spec, test = _copy(trained, tmp_path)
    other = generate_applicants(rows=400, seed=1).drop(columns=["region"])
    other_spec = build_feature_spec(other, "defaulted", 1, ["applicant_id"], "application_date")
    other_splits = split_dataset(other, other_spec, 0.2, 0.2, 0)
    result = train_candidate(other_splits.train, other_splits.validation,
                             CandidateSpec("lr", "logistic_regression", {}), other_spec)
    (candidate / "model.onnx").write_bytes(result.onnx)
    report = infra_validate(str(candidate), test, spec, sample_rows=4)
    assert not report.passed
    # The server's own refusal, passed through: which inputs the graph lacks against the schema.
    assert report.reason.startswith("model server did not become ready: model server exited with code 1")
    assert "the graph's inputs do not match input_schema.json: missing ['region'], unexpected []" in report.reason


def test_infra_validation_never_unpickles(trained, tmp_path):
    import pickle

    candidate, spec, test = _copy(trained, tmp_path)
    marker = tmp_path / "pickle-ran"
    (candidate / "model.joblib").write_bytes(pickle.dumps(_WritesMarker(str(marker))))
    report = infra_validate(str(candidate), test, spec, sample_rows=4)
    assert report.passed, report.reason
    assert not marker.exists()


def test_the_test_split_is_read_while_the_server_starts(trained, tmp_path):
    # The component hands over a reader: the split (and pandas with it) loads once the server process
    # is starting, so the two overlap on two cores.
    directory, spec, test = trained
    seen = []

    def read_test_split():
        seen.append((tmp_path / "model-server.log").exists())
        return test

    report = infra_validate(str(directory), read_test_split, spec, sample_rows=4, log_dir=tmp_path)
    assert report.passed, report.reason
    assert seen == [True] and report.rows == 4


def test_an_empty_test_split_read_during_start_up_blocks_and_stops_the_server(trained, tmp_path):
    directory, spec, test = trained
    report = infra_validate(str(directory), lambda: test.iloc[:0], spec, sample_rows=4, log_dir=tmp_path)
    assert not report.passed and report.reason == "the test split has no rows to validate with"
    assert report.rows == 0
    # The server it started is gone: no model server process of ours is left.
    assert not [child for child in psutil.Process().children(recursive=True) if "tollgate.serving" in " ".join(
        child.cmdline())]


class _WritesMarker:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_serving_settings_that_refuse_test_rows_block(trained):
    directory, spec, test = trained
    report = infra_validate(str(directory), test, spec, sample_rows=8, max_batch=4)
    assert not report.passed
    assert "over the limit of 4" in report.reason


@pytest.mark.pipeline
def test_run_whose_candidate_fails_infra_validation_registers_nothing(config_factory):
    from tests.conftest import run_pipeline
    from tollgate.registry import open_registry

    config = config_factory(**{"serving.max_batch": 2, "serving.infra_validation.sample_rows": 8})
    outcome, summary = run_pipeline(config)
    assert not outcome.succeeded and outcome.failed_task == "infra-validate"
    # The run stops with the check that failed and its numbers: 8 sample rows sent in one request
    # to a server that takes at most 2 (serving.max_batch), refused over the first protocol tried.
    assert outcome.error.startswith("RuntimeError: infra validation failed, promotion blocked: model server "
                                    "refused the sample rows over rest-v2: "), outcome.error
    assert "batch of 8 rows is over the limit of 2 (serving.max_batch)" in outcome.error
    infra = summary["infra_validation"]
    assert infra["passed"] is False and infra["rows"] == 8
    assert infra["reason"] in outcome.error and "over the limit of 2" in infra["reason"]
    assert {step["step"] for step in summary["steps"]}.isdisjoint({"register", "deploy"})
    assert open_registry(config.registry.uri).version_numbers(config.model_name) == []


def test_the_staged_version_serves_the_same_bytes_and_schema_and_says_what_else_it_holds(trained, tmp_path):
    """What infra-validation serves: the candidate's model.onnx bytes and the spec's input schema (what
    register publishes); metadata.json holds nothing but what the server reads from it."""
    import json

    from tollgate.steps.infra_validate import stage_version_dir

    directory, spec, _ = trained
    staged = stage_version_dir(directory, spec, tmp_path / "model")
    assert sorted(p.name for p in staged.iterdir()) == ["input_schema.json", "metadata.json", "model.onnx"]
    assert (staged / "model.onnx").read_bytes() == (directory / "model.onnx").read_bytes()
    assert json.loads((staged / "input_schema.json").read_text()) == spec.schema
    from tollgate.records import VersionMetadata

    stored = json.loads((staged / "metadata.json").read_text())
    # The features register records too (one definition: FeatureSpec.served_features).
    assert stored == {"record": "version_metadata", "record_version": 1, "version": "candidate",
                      "features": {"numeric": spec.numeric, "categorical": spec.categorical, "target": "defaulted",
                                   "positive_label": 1, "negative_label": 0}}
    assert spec.numeric and spec.categorical
    assert VersionMetadata.from_dict(stored) == VersionMetadata(version="candidate", features=spec.served_features())


def _binary_answers(trained, tmp_path, rows=120):
    """A staged version directory, its sample rows and a served answer equal to in-process onnxruntime."""
    from tollgate.serving.client import Predictions
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.infra_validate import stage_version_dir

    directory, spec, test = trained
    version_dir = stage_version_dir(directory, spec, tmp_path / "model")
    sample = test[spec.columns].head(rows)
    positive = OnnxModel.from_file(version_dir / "model.onnx", spec.schema).predict_proba(sample)[:, 1]
    positive = positive.astype(np.float64)
    classes = [1 if p >= spec.decision_threshold else 0 for p in positive]
    assert len(set(classes)) == 2  # both classes among the sample rows, so a flip is visible either way

    def answer(probabilities=positive, answered_classes=classes):
        return Predictions("candidate", "candidate", list(answered_classes), list(map(float, probabilities)))

    return version_dir, spec, sample, positive, classes, answer


@pytest.mark.parametrize("protocol", ["rest-v2", "grpc"])
def test_binary_answer_whose_probabilities_differ_blocks(trained, tmp_path, protocol):
    from tollgate.steps.infra_validate import _compare_with_onnxruntime

    version_dir, spec, sample, positive, _, answer = _binary_answers(trained, tmp_path)
    exact = _compare_with_onnxruntime(version_dir, spec, sample, {"rest-v2": answer(), "grpc": answer()}, 0.0)
    assert exact["passed"], exact["reason"]
    assert exact["max_abs_difference"] == {"rest-v2": 0.0, "grpc": 0.0}

    # One row off by 0.002: blocked at the default tolerance 0 and at 0.001, with the number and the tolerance.
    shifted = positive.copy()
    shifted[3] += 0.002
    answers = {"rest-v2": answer(), "grpc": answer()}
    answers[protocol] = answer(shifted)
    for tolerance, words in ((0.0, "0"), (0.001, "0.001")):
        outcome = _compare_with_onnxruntime(version_dir, spec, sample, answers, tolerance)
        assert not outcome["passed"]
        assert outcome["reason"] == (f"{protocol} probabilities differ from in-process onnxruntime on the same bytes "
                                     f"by 0.002 (tolerance {words})")
        assert outcome["max_abs_difference"][protocol] == pytest.approx(0.002, rel=1e-9)
    # Within a tolerance that covers it, the same answer passes.
    assert _compare_with_onnxruntime(version_dir, spec, sample, answers, 0.003)["passed"]

    # Off by one part in a million (float32 -> float64 rounding would be far smaller): still blocked at 0.
    answers[protocol] = answer(positive + 1e-6)
    outcome = _compare_with_onnxruntime(version_dir, spec, sample, answers, 0.0)
    assert not outcome["passed"]
    assert outcome["reason"] == (f"{protocol} probabilities differ from in-process onnxruntime on the same bytes "
                                 f"by 1e-06 (tolerance 0)")


@pytest.mark.parametrize("flipped", [0, 1], ids=["a-negative-row-answered-positive", "a-positive-row-answered-negative"])
def test_binary_answer_with_one_predicted_class_flipped_blocks(trained, tmp_path, flipped):
    from tollgate.steps.infra_validate import _compare_with_onnxruntime

    version_dir, spec, sample, _, classes, answer = _binary_answers(trained, tmp_path)
    wrong = list(classes)
    row = classes.index(flipped)
    wrong[row] = 1 - flipped
    for protocol in ("rest-v2", "grpc"):
        answers = {"rest-v2": answer(), "grpc": answer()}
        answers[protocol] = answer(answered_classes=wrong)
        outcome = _compare_with_onnxruntime(version_dir, spec, sample, answers, 0.0)
        assert not outcome["passed"]
        assert outcome["reason"] == f"{protocol} predicted classes differ from in-process onnxruntime"
    # The labels are compared as text, as the server answers them over REST (JSON) or gRPC.
    as_text = _compare_with_onnxruntime(version_dir, spec, sample,
                                        {"grpc": answer(answered_classes=[str(c) for c in classes])}, 0.0)
    assert as_text["passed"], as_text["reason"]
