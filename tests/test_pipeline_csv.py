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


def messy_csv(path, rows: int = 2000, seed: int = 5) -> None:
    """The built-in table written as real exports often are: ';' with a space after each
    separator, ' ' for unknown amounts, blank booleans, '?' for an unknown region, text dates."""
    import numpy as np

    from tollgate.data.builtin import generate_applicants

    frame = generate_applicants(rows=rows, seed=seed).drop(columns=["applicant_id"])
    rng = np.random.default_rng(seed)
    for column, marker, count in (("existing_balance", " ", 11), ("has_mortgage", None, 30), ("region", "?", 20)):
        frame[column] = frame[column].astype(object)
        frame.loc[rng.choice(len(frame), count, replace=False), column] = marker
    frame["application_date"] = frame["application_date"].dt.strftime("%Y-%m-%d")
    lines = frame.to_csv(index=False, sep=";").splitlines()
    path.write_text("\n".join("; ".join(line.split(";")) for line in lines) + "\n")


def test_dag_trains_serves_and_compares_on_a_messy_csv_with_config_alone(tmp_path):
    path = tmp_path / "applicants.csv"
    messy_csv(path)
    config = make_config(tmp_path, **{"model_name": "messy", "data.source": str(path), "data.drop": [],
                                      "data.csv.missing_values": ["?"],
                                      # the point here is reading, not model quality
                                      "gate.absolute": {}, "gate.max_degradation": {"roc_auc": 0.05}})

    first, summary = run_pipeline(config)

    assert first.succeeded, first.error
    notes = summary["data"]["notes"]
    assert "separator ';' detected (set data.csv.separator to override)" in notes
    assert "'has_mortgage': read as boolean; 30 blank values are missing" in notes
    assert "'application_date': read as dates (data.date_column)" in notes
    assert summary["data"]["rows"] == 2000 and isinstance(summary["data"]["rows"], int)
    assert summary["gate"]["passed"] and summary["registered_version"] == 1   # infra-validate served it
    from tollgate.registry import open_registry

    version = open_registry(config.registry.uri).resolve("messy", "production")
    schema = {c["name"]: c for c in pd.read_json(version.uri + "/input_schema.json", typ="series")["columns"]}
    assert schema["has_mortgage"]["dtype"] == "bool"
    assert schema["existing_balance"]["dtype"] == "float64"
    assert "?" not in (schema["region"].get("categories") or [])
    assert "application_date" not in schema
    rows = version.metadata["data"]["rows"]
    assert rows == 2000 and isinstance(rows, int)        # not 2000.0 from KFP's Struct metadata
    from typer.testing import CliRunner

    from tollgate.cli import app

    listing = CliRunner().invoke(app, ["models", "list", "--registry", config.registry.uri, "--model-name", "messy"],
                                 terminal_width=200)
    assert listing.exit_code == 0 and "2000" in listing.output and "2000.0" not in listing.output

    second, summary = run_pipeline(config)
    assert second.succeeded, second.error
    assert summary["champion"]["version"] == 1 and not summary["champion"].get("error")
    assert not [a for a in summary["validation"]["anomalies"] if a["check"] == "dtype_change"]
