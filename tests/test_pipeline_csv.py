"""Another CSV needs only config: a different table, text labels, an id to drop, no date column."""

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tests.conftest import make_config, run_pipeline

pytestmark = pytest.mark.pipeline


def test_dag_trains_on_a_users_csv_with_text_labels(tmp_path):
    bunch = load_breast_cancer(as_frame=True)  # ships with scikit-learn; nothing is downloaded
    frame = bunch.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    frame.insert(0, "patient_id", range(100_000, 100_000 + len(frame)))
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)
    config = make_config(tmp_path, **{
        "model_name": "cancer", "data.source": str(path), "data.target": "diagnosis",
        "data.positive_label": "malignant", "data.drop": ["patient_id"], "data.date_column": None,
    })

    outcome, summary = run_pipeline(config)

    assert outcome.succeeded, outcome.error
    assert summary["gate"]["passed"] and summary["registered_version"] == 1
    assert summary["candidate"]["test_metrics"]["roc_auc"] > 0.95
    from tollgate.registry import open_registry

    version = open_registry(config.registry.uri).resolve("cancer", "production")
    features = version.metadata["features"]
    assert features["positive_label"] == "malignant" and features["negative_label"] == "benign"
    schema_columns = [c["name"] for c in pd.read_json(version.uri + "/input_schema.json", typ="series")["columns"]]
    assert "patient_id" not in schema_columns and "diagnosis" not in schema_columns
    assert len(schema_columns) == 30
