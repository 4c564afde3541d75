"""Infra-validation starts the real model server with the candidate and blocks what it cannot serve."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.steps.infra_validate import infra_validate
from tollgate.steps.preprocess import FeatureSpec


@pytest.fixture(scope="module")
def spec(trained_model_dir) -> FeatureSpec:
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    features = metadata["features"]
    return FeatureSpec(target=features["target"], positive_label=features["positive_label"],
                       negative_label=features["negative_label"], numeric=features["numeric"],
                       categorical=features["categorical"],
                       schema=json.loads((trained_model_dir / "input_schema.json").read_text()))


@pytest.fixture(scope="module")
def test_rows(spec) -> pd.DataFrame:
    return generate_applicants(rows=60, seed=4321)[spec.columns]


def test_good_candidate_passes_over_rest_and_grpc(trained_model_dir, spec, test_rows, tmp_path):
    report = infra_validate(str(trained_model_dir), test_rows, spec, sample_rows=16, log_dir=tmp_path)
    assert report["passed"], report["reason"]
    assert report["rows"] == 16
    assert set(report["max_abs_difference"]) == {"rest-v2", "grpc"}
    assert max(report["max_abs_difference"].values()) <= 1e-9
    assert "Uvicorn running on http://127.0.0.1" in (tmp_path / "model-server.log").read_text()


def test_broken_artifact_is_blocked(trained_model_dir, spec, test_rows, tmp_path):
    broken = tmp_path / "candidate"
    shutil.copytree(trained_model_dir, broken)
    (broken / "_COMPLETE").unlink()  # a candidate from train has no registry manifest to fail first
    (broken / "model.joblib").write_bytes(b"this is not a pickle")
    report = infra_validate(str(broken), test_rows, spec, sample_rows=4, ready_timeout=60)
    assert not report["passed"]
    assert "did not become ready" in report["reason"]
    assert "model.joblib does not load" in report["reason"]


def test_artifact_that_cannot_predict_is_blocked(trained_model_dir, spec, test_rows, tmp_path):
    # Loads fine but fails on the first request: only querying the server finds this.
    from sklearn.dummy import DummyClassifier
    import joblib

    candidate = tmp_path / "candidate"
    candidate.mkdir()
    joblib.dump(DummyClassifier(), candidate / "model.joblib")
    report = infra_validate(str(candidate), test_rows, spec, sample_rows=4)
    assert not report["passed"]
    assert "refused the sample rows over rest-v2" in report["reason"]


def test_serving_settings_that_refuse_test_rows_block(trained_model_dir, spec, test_rows):
    report = infra_validate(str(trained_model_dir), test_rows, spec, sample_rows=8, max_batch=4)
    assert not report["passed"]
    assert "over the limit of 4" in report["reason"]


@pytest.mark.pipeline
def test_run_whose_candidate_fails_infra_validation_registers_nothing(config_factory):
    from tests.conftest import run_pipeline
    from tollgate.registry import open_registry

    config = config_factory(**{"serving.max_batch": 2, "serving.infra_validation.sample_rows": 8})
    outcome, summary = run_pipeline(config)
    assert not outcome.succeeded
    assert "infra" in str(outcome.error).lower()
    assert open_registry(config.registry.uri).list_versions(config.model_name) == []
