"""Data validation: the data schema, every anomaly class on crafted data, none on clean data,
severities from the config, and the line between ingest and validate."""

import json

import numpy as np
import pandas as pd
import pytest

from tollgate.config import ValidationConfig, load_config
from tollgate.data.builtin import generate_applicants
from tollgate.errors import ConfigError, DataError
from tollgate.steps.ingest import check_table, ingest
from tollgate.steps.validate import TABLE, infer_data_schema, validate

IGNORED = ["applicant_id", "application_date"]


@pytest.fixture(scope="module")
def reference():
    return infer_data_schema(generate_applicants(rows=1500, seed=7), "defaulted", 1, IGNORED)


@pytest.fixture(scope="module")
def clean():
    return generate_applicants(rows=1500, seed=8)


def check(frame, reference_schema, settings=None, min_rows=200, positive_label=1, task="auto"):
    # as the default config does: applicant_id is in data.drop, application_date is the date column
    return validate(frame, reference_schema, target="defaulted", positive_label=positive_label, min_rows=min_rows,
                    settings=settings, ignored=["applicant_id", "application_date"], task=task)


def test_schema_describes_columns_dtypes_ranges_domains_labels_and_rows(reference):
    columns = {c.name: c for c in reference.columns}
    assert reference.rows == 1500 and reference.duplicate_share == 0.0
    assert set(columns) == set(generate_applicants(rows=10).columns)
    assert columns["defaulted"].role == "label" and columns["applicant_id"].role == "ignored"
    income = columns["annual_income"]
    assert income.family == "numeric" and income.dtype == "float64"
    assert 0.0 < income.null_fraction < 0.05
    assert income.min <= income.quantiles["0.5"] <= income.max
    assert income.profile is not None and len(income.profile.shares) == len(income.profile.edges) + 2
    assert sum(income.profile.shares) == pytest.approx(1.0)
    region = columns["region"]
    assert region.family == "string" and set(region.categories) == {"north", "south", "east", "west", "central"}
    assert sum(region.categories.values()) == pytest.approx(1.0)
    assert columns["prior_bankruptcy"].family == "bool"
    assert set(reference.label_shares) == {"0", "1"} and reference.label_missing == 0


def test_the_data_schema_is_a_versioned_record_that_reads_the_untagged_files_of_older_versions(reference):
    from tollgate.records import DataSchema, RecordError

    written = json.loads(reference.to_json())
    assert (written["record"], written["record_version"]) == ("data_schema", 1)
    assert DataSchema.from_json(reference.to_json()) == reference
    # What Tollgate wrote before the record (still in registries): untagged, marked {"format": 1}.
    legacy = {k: v for k, v in written.items() if k not in ("record", "record_version")} | {"format": 1}
    assert DataSchema.from_dict(legacy) == reference
    assert check(generate_applicants(rows=1500, seed=8), DataSchema.from_dict(legacy)).passed
    # Keys of a newer format are kept and written back; a newer format itself is refused, saying so.
    newer = {**written, "sketches": {"age": [1, 2]}, "columns": [{**written["columns"][0], "histogram": [3]},
                                                                   *written["columns"][1:]]}
    again = json.loads(DataSchema.from_dict(newer).to_json())
    assert again["sketches"] == {"age": [1, 2]} and again["columns"][0]["histogram"] == [3]
    with pytest.raises(RecordError, match="format 2, written by a newer Tollgate"):
        DataSchema.from_dict({**written, "record_version": 2})


def test_schema_quantiles_are_numpys_linear_quantiles_of_the_present_values():
    # Each quantile is that of the non-missing values, linear interpolation (numpy's default),
    # keyed as written in QUANTILES; integers are described as floats. Different values per column.
    rng = np.random.default_rng(3)
    frame = generate_applicants(rows=800, seed=3).assign(
        skewed=np.where(rng.random(800) < 0.2, np.nan, rng.lognormal(size=800)),
        whole=rng.integers(0, 40, 800))
    columns = {c.name: c for c in infer_data_schema(frame, "defaulted", 1, IGNORED).columns}
    for name in ("skewed", "whole", "annual_income"):
        present = frame[name].dropna().to_numpy(dtype=float)
        expected = {"0": present.min(), "0.01": np.quantile(present, 0.01), "0.05": np.quantile(present, 0.05),
                    "0.25": np.quantile(present, 0.25), "0.5": np.median(present), "0.75": np.quantile(present, 0.75),
                    "0.95": np.quantile(present, 0.95), "0.99": np.quantile(present, 0.99), "1": present.max()}
        assert columns[name].quantiles == pytest.approx(expected, rel=1e-12, abs=0), name
    assert columns["skewed"].quantiles != columns["whole"].quantiles


def test_clean_data_has_no_anomalies_and_no_drift(reference, clean):
    report = check(clean, reference)
    assert report.anomalies == [] and report.passed
    assert len(report.drift) > 20 and not any(d.drifted for d in report.drift)
    smaller = check(generate_applicants(rows=400, seed=11), reference)
    assert smaller.anomalies == []
    assert check(clean, None).anomalies == []           # first training: checks of the data on its own


def _shuffle_rows(frame, share, seed=0):
    return np.random.default_rng(seed).random(len(frame)) < share


CRAFTED = {
    "missing_column": (lambda f: f.drop(columns="credit_score"), "credit_score", True),
    "new_column": (lambda f: f.assign(loyalty_points=1), "loyalty_points", False),
    "dtype_change": (lambda f: f.assign(age=f["age"].astype(str) + " years"), "age", True),
    "null_fraction_spike": (lambda f: f.assign(annual_income=f["annual_income"].mask(_shuffle_rows(f, 0.4))),
                            "annual_income", True),
    "unseen_categories": (lambda f: f.assign(region=f["region"].mask(_shuffle_rows(f, 0.05), "atlantis")),
                          "region", False),
    "out_of_range": (lambda f: f.assign(age=f["age"].mask(_shuffle_rows(f, 0.05), 140)), "age", False),
    "too_few_rows": (lambda f: f.head(150), TABLE, True),
    "duplicate_rows": (lambda f: pd.concat([f, f.head(60)], ignore_index=True), TABLE, False),
    "label_missing": (lambda f: f.assign(defaulted=f["defaulted"].where(f.index > 4)), "defaulted", True),
    "single_class": (lambda f: f.assign(defaulted=0), "defaulted", True),
    "unknown_labels": (lambda f: f.assign(defaulted=f["defaulted"].mask(f.index < 20, 2)), "defaulted", True),
    "empty_file": (lambda f: f.head(0), TABLE, True),
}


@pytest.mark.parametrize("check_name", sorted(CRAFTED))
def test_each_anomaly_class_is_detected_on_crafted_data(reference, clean, check_name):
    mutate, column, blocking = CRAFTED[check_name]
    report = check(mutate(clean.copy()), reference)
    found = [a for a in report.anomalies if a.check == check_name]
    assert [a.column for a in found] == [column], report.anomalies
    assert found[0].blocking is blocking and report.passed is not blocking
    # Nothing else fires, apart from drift that the mutation itself causes.
    assert {a.check for a in report.anomalies} - {check_name, "drift"} == set(), report.anomalies
    message = found[0].message()
    assert column in message and check_name in message and "observed" in message and "allowed" in message


def test_label_problems_are_found_without_a_reference(clean):
    three = check(clean.assign(defaulted=clean.index % 3), None, task="binary")
    assert [(a.check, a.blocking) for a in three.anomalies] == [("unknown_labels", True)]
    assert "3 classes" in three.anomalies[0].observed
    # data.task auto (the default): three classes are a multiclass target, not an anomaly.
    assert check(clean.assign(defaulted=clean.index % 3), None).anomalies == []
    text = check(clean.assign(defaulted=clean["defaulted"].map({0: "no", 1: "yes"})), None)
    assert [a.check for a in text.anomalies] == ["unknown_labels"]
    assert "positive label 1 never occurs" in text.anomalies[0].observed
    # Labels read from CSV as text still match a numeric positive label.
    assert check(clean.assign(defaulted=clean["defaulted"].astype(str)), None).anomalies == []


def test_blocking_message_names_column_check_observed_allowed_and_the_setting(reference, clean):
    report = check(clean.drop(columns="credit_score").assign(defaulted=0), reference)
    message = report.failure_message()
    assert "nothing will be trained or registered" in message
    assert "credit_score: missing_column (observed absent; allowed present" in message
    assert "validation.severity.missing_column: warning would allow it" in message
    assert "defaulted: single_class (observed 1 class (0); allowed 2 classes)" in message
    assert "severity.single_class" not in message             # cannot be relaxed


def test_severity_comes_from_the_config(reference, clean):
    relaxed = ValidationConfig(severity={"missing_column": "warning"})
    report = check(clean.drop(columns="credit_score"), reference, settings=relaxed)
    assert report.passed and [a.check for a in report.warnings] == ["missing_column"]
    strict = ValidationConfig(severity={"new_column": "blocking", "duplicate_rows": "blocking"}, max_duplicate_share=0.0)
    report = check(pd.concat([clean.assign(extra=1), clean.head(1).assign(extra=1)]), reference, settings=strict)
    assert {(a.check, a.blocking) for a in report.anomalies} == {("new_column", True), ("duplicate_rows", True)}


@pytest.mark.parametrize("overrides, message", [
    ({"validation.severity": {"single_class": "warning"}}, "make training impossible and are always blocking"),
    ({"validation.severity": {"missing_colum": "warning"}}, "unknown check(s) ['missing_colum']"),
    ({"validation.drift.features": {"age": 1.5}}, "drift thresholds must be in (0, 1]"),
])
def test_bad_validation_config_is_refused(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert message in str(error.value)


def test_ingest_reads_what_validate_judges(tmp_path, clean):
    """Ingest refuses only what it cannot address; contents are validate's, so the two never disagree."""
    single = clean.assign(defaulted=0)
    check_table(single, "defaulted", drop=IGNORED[:1])            # no DataError: a content problem
    assert [a.check for a in check(single, None).anomalies] == ["single_class"]
    header_only = tmp_path / "header.csv"
    clean.head(0).to_csv(header_only, index=False)
    result = ingest(str(header_only), "defaulted")
    assert len(result.frame) == 0
    assert [a.check for a in check(result.frame, None).anomalies] == ["empty_file"]
    with pytest.raises(DataError, match="target column 'label' is not in the data"):
        check_table(clean, "label")


def test_identifier_columns_are_found_and_named():
    from tollgate.steps.validate import identifier_columns, validate

    frame = generate_applicants(rows=400, seed=2)
    frame.insert(0, "Unnamed: 0", range(len(frame)))                       # pandas' saved index
    frame["PassengerId"] = range(1, len(frame) + 1)
    frame["Name"] = [f"Passenger {i}, Mr." for i in range(len(frame))]
    frame["Ticket"] = [f"T{i // 2}" for i in range(len(frame))]            # half the rows share a ticket
    frame["credit_score_int"] = frame["credit_score"].round().astype("Int64")  # a real integer feature
    found = identifier_columns(frame, ["defaulted", "applicant_id"])
    assert set(found) == {"Unnamed: 0", "PassengerId", "Name", "Ticket"}
    assert found["Unnamed: 0"] == "a running index 0..399"
    assert found["Name"] == "text with 400 distinct values in 400 rows"

    report = validate(frame, None, target="defaulted", positive_label=1, min_rows=10,
                      ignored=["applicant_id"], drop_identifiers=True)
    flagged = {a.column: a for a in report.anomalies if a.check == "identifier_column"}
    assert set(flagged) == set(found) and report.passed
    assert flagged["Ticket"].allowed == "not a feature: left out (data.drop_identifiers)"
    strict = ValidationConfig(severity={"identifier_column": "blocking"})
    assert not validate(frame, None, target="defaulted", positive_label=1, min_rows=10, settings=strict,
                        ignored=["applicant_id"]).passed


def test_a_check_on_thousands_of_columns_is_reported_once():
    from tollgate.steps.validate import infer_data_schema, validate

    frame = generate_applicants(rows=300, seed=4)
    reference = infer_data_schema(frame, "defaulted", 1)
    wide = pd.concat([frame, pd.DataFrame(np.zeros((len(frame), 2000)), columns=[f"x{i}" for i in range(2000)])],
                     axis=1)
    report = validate(wide, reference, target="defaulted", positive_label=1, min_rows=10, ignored=["applicant_id"])
    new = [a for a in report.anomalies if a.check == "new_column"]
    assert len(new) == 1
    assert new[0].column == "2,000 columns ('x0', 'x1', 'x2', 'x3', 'x4' and 1,995 more)"
    assert new[0].observed == "present (float64) (first of 2,000)"
    assert len(report.to_dict()["anomalies"]) < 20


def test_run_validate_finds_duplicate_rows_once_for_the_report_and_the_schema(tmp_path, monkeypatch):
    # run_validate reads the duplicate share off the data schema it writes; the report must still
    # flag it, with the same share the schema records, and the frame is compared row by row once.
    from tollgate.registry import open_registry
    from tollgate.settings import ValidateSettings
    from tollgate.steps import validate as validate_module

    frame = generate_applicants(rows=1000, seed=4)
    frame = pd.concat([frame, frame.head(30)], ignore_index=True)  # 30 of 1,030 rows repeat an earlier one
    calls = []
    original = validate_module._duplicate_share
    monkeypatch.setattr(validate_module, "_duplicate_share", lambda f: calls.append(len(f)) or original(f))
    report, schema = validate_module.run_validate(frame, ValidateSettings.from_config(load_config(None, {})),
                                                  open_registry(str(tmp_path)), "m")
    assert calls == [1030]
    assert schema.duplicate_share == pytest.approx(30 / 1030)
    duplicate = next(a for a in report.anomalies if a.check == "duplicate_rows")
    assert (duplicate.observed, duplicate.blocking) == ("2.91% of rows", False)
