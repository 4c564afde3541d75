"""Ingest: reading CSV/Parquet from disk and S3, daily windows, and data that cannot train."""

import pandas as pd
import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.errors import DataError
from tollgate.steps.ingest import check_table, fingerprint, ingest, read_table, select_window


def small_table(rows=300, seed=1):
    return generate_applicants(rows=rows, seed=seed)


def test_builtin_data_is_realistic_and_seeded():
    frame = generate_applicants(rows=5000, seed=3)
    assert frame.shape[1] >= 20
    assert 0.15 < frame["defaulted"].mean() < 0.30
    assert frame.isna().any().sum() >= 3                                  # some missing values
    assert frame.select_dtypes("object").shape[1] >= 5                    # categoricals
    assert frame["annual_income"].skew() > 1                              # skewed numeric
    assert frame["revolving_utilization"].max() > 1                       # outliers
    assert frame["application_date"].dt.normalize().nunique() > 30        # daily partitions
    pd.testing.assert_frame_equal(frame, generate_applicants(rows=5000, seed=3))
    drifted = generate_applicants(rows=5000, seed=3, drift=1.0)
    assert drifted["revolving_utilization"].mean() > frame["revolving_utilization"].mean() + 0.05
    assert "mobile_app" in set(drifted["channel"]) and "mobile_app" not in set(frame["channel"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_reads_csv_and_parquet(tmp_path, suffix):
    frame = small_table()
    path = tmp_path / f"data{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    loaded = read_table(str(path))
    if suffix == ".csv":  # CSV carries no types: dates come back as text until normalize_types parses them,
        # and a blank text cell as NaN where the generator wrote None
        assert loaded["application_date"].tolist() == frame["application_date"].dt.strftime("%Y-%m-%d").tolist()
        loaded["application_date"] = pd.to_datetime(loaded["application_date"])
        text = frame.select_dtypes("object").columns
        frame[text] = frame[text].where(frame[text].notna(), float("nan"))
    pd.testing.assert_frame_equal(loaded, frame)  # every value, column order and dtype


def test_reads_from_s3(s3_bucket, tmp_path):
    from tollgate.s3 import client_from_env

    frame = small_table()
    local = tmp_path / "applicants.parquet"
    frame.to_parquet(local, index=False)
    client_from_env().fput_object(s3_bucket, "daily/applicants.parquet", str(local))
    result = ingest(f"s3://{s3_bucket}/daily/applicants.parquet", "defaulted")
    assert len(result.frame) == len(frame)
    assert result.fingerprint == fingerprint(frame)


@pytest.mark.parametrize("source, message", [
    ("missing.csv", "data file not found"),
    ("table.xlsx", "expected a .csv or .parquet file"),
])
def test_unreadable_sources_are_explained(tmp_path, source, message):
    with pytest.raises(DataError, match=message):
        read_table(str(tmp_path / source))


def test_empty_file_is_explained(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty \(0 bytes\)$"):
        read_table(str(path))


# Ingest refuses only what it cannot address (columns the config names); problems with the
# contents (rows, labels, duplicates) are validate's anomalies, tested in test_validate.py.
@pytest.mark.parametrize("mutate, drop, message", [
    (lambda f: f.drop(columns="defaulted"), [], "target column 'defaulted' is not in the data"),
    (lambda f: f, ["nonexistent"], "data.drop names 'nonexistent', which is not in the data"),
    (lambda f: f[["defaulted", "applicant_id"]], ["applicant_id"], "no feature columns are left"),
])
def test_unaddressable_configuration_fails_with_the_reason(mutate, drop, message):
    with pytest.raises(DataError, match=message):
        check_table(mutate(small_table()), "defaulted", drop)


def test_scheduled_window_keeps_whole_days_before_the_run():
    frame = generate_applicants(rows=2000, start_date="2026-03-01", days=30)
    window, bounds = select_window(frame, "application_date", "2026-03-21T02:00:00Z", 7)
    assert bounds == ("2026-03-14", "2026-03-21")
    assert window["application_date"].min() >= pd.Timestamp("2026-03-14")
    assert window["application_date"].max() < pd.Timestamp("2026-03-21")
    assert 0 < len(window) < len(frame)
    unchanged, none = select_window(frame, "application_date", "", 7)
    assert none is None and len(unchanged) == len(frame)
