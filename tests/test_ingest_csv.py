"""Real-world CSVs read with config alone: separators, spaces, missing markers, headerless
files, encodings, and columns given the type their values have (issue: real CSVs)."""

from __future__ import annotations

import pandas as pd
import pytest

from tollgate.config import CsvConfig, configured_columns, load_config
from tollgate.errors import ConfigError, DataError
from tollgate.steps.ingest import detect_separator, ingest, read_table

ROWS = [
    ("39", "State-gov", "77516", "Male", "<=50K"),
    ("50", "Self-emp", "83311", "Male", ">50K"),
    ("38", "Private", "215646", "Female", "<=50K"),
    ("53", "Private", "234721", "Male", ">50K"),
]
HEADER = ("age", "workclass", "fnlwgt", "sex", "income")


def write(tmp_path, text: str, name: str = "data.csv", encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def table(separator: str = ",", spaces: str = "", header: bool = True) -> str:
    lines = [HEADER] if header else []
    lines += ROWS
    return "\n".join((separator + spaces).join(row) for row in lines) + "\n"


@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_the_separator_is_detected(tmp_path, separator):
    notes: list[str] = []
    frame = read_table(write(tmp_path, table(separator)), CsvConfig(), notes)
    assert list(frame.columns) == list(HEADER)
    assert frame["age"].tolist() == [39, 50, 38, 53]
    if separator != ",":
        assert notes == [f"separator {separator!r} detected (set data.csv.separator to override)"]


def test_a_wrong_separator_names_the_one_to_set(tmp_path):
    path = write(tmp_path, table(";"))
    with pytest.raises(DataError) as error:
        read_table(path, CsvConfig(separator=","))
    assert "parsed into one column 'age;workclass;fnlwgt;sex;income'" in str(error.value)
    assert "set data.csv.separator: ';'" in str(error.value)


def test_spaces_around_headers_and_values_are_stripped(tmp_path):
    # The census-income layout: ", " between fields, so every name and value has a leading space.
    path = write(tmp_path, table(",", spaces=" ").replace("\n", "  \n"))
    result = ingest(path, "income", csv=CsvConfig())
    assert list(result.frame.columns) == list(HEADER)
    assert result.frame["workclass"].tolist() == ["State-gov", "Self-emp", "Private", "Private"]
    assert result.frame["income"].tolist() == ["<=50K", ">50K", "<=50K", ">50K"]
    kept = read_table(path, CsvConfig(strip_whitespace=False))
    assert " workclass" in kept.columns and kept[" workclass"].iloc[0] == " State-gov"


def test_declared_missing_markers_become_missing(tmp_path):
    text = table().replace("Self-emp", "?").replace("215646", "?")
    path = write(tmp_path, text)
    as_text = ingest(path, "income", csv=CsvConfig())
    assert "?" in set(as_text.frame["workclass"])
    # The numeric column with one '?' is kept as text, and the note says what to set.
    assert as_text.frame["fnlwgt"].dtype == object
    assert any("'fnlwgt': numeric except 1 value ['?']" in n and "data.csv.missing_values" in n
               for n in as_text.notes), as_text.notes
    declared = ingest(path, "income", csv=CsvConfig(missing_values=["?"]))
    assert declared.frame["workclass"].isna().sum() == 1
    assert pd.api.types.is_numeric_dtype(declared.frame["fnlwgt"]) and declared.frame["fnlwgt"].isna().sum() == 1


def test_a_headerless_file_gets_a_hint_and_reads_with_names(tmp_path):
    path = write(tmp_path, table(header=False))
    with pytest.raises(DataError) as error:
        ingest(path, "income", csv=CsvConfig())
    message = str(error.value)
    assert "target column 'income' is not in the data" in message
    assert "The first row looks like data, not a header: set data.csv.header: null" in message
    result = ingest(path, "income", csv=CsvConfig(header=None, columns=list(HEADER)))
    assert len(result.frame) == 4 and list(result.frame.columns) == list(HEADER)


def test_headerless_without_names_is_a_config_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  source: data.csv\n  csv:\n    header: null\n")
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert "data.csv: Value error, header: null (no header row) needs the column names in data.csv.columns" \
        in str(error.value)


def test_an_encoding_mismatch_says_what_to_set(tmp_path):
    text = table().replace("State-gov", "Staté-gov")
    path = write(tmp_path, text, encoding="latin-1")
    with pytest.raises(DataError, match="cannot decode .* as utf-8 .*set data.csv.encoding"):
        read_table(path, CsvConfig())
    frame = read_table(path, CsvConfig(encoding="latin-1"))
    assert frame["workclass"].iloc[0] == "Staté-gov"
    with pytest.raises(Exception, match="unknown encoding 'utf-9'"):
        CsvConfig(encoding="utf-9")


def telecom(tmp_path, blanks: int = 11):
    # The telecom-churn shape: TotalCharges holds ' ' for new customers; a boolean with blanks.
    rows = ["customerID,tenure,TotalCharges,Partner,signup,Churn"]
    for i in range(200):
        charges = " " if i < blanks else f"{29.85 + i:.2f}"
        partner = "" if i % 17 == 0 else ("True" if i % 2 else "False")
        rows.append(f"C{i:04d},{i % 72},{charges},{partner},2026-0{1 + i % 9}-1{i % 10},{'Yes' if i % 3 else 'No'}")
    return write(tmp_path, "\n".join(rows) + "\n", "telecom.csv")


def test_numeric_text_with_blanks_becomes_numeric_and_says_so(tmp_path):
    result = ingest(telecom(tmp_path), "Churn", csv=CsvConfig(), date_column="signup")
    frame = result.frame
    assert pd.api.types.is_float_dtype(frame["TotalCharges"])
    assert frame["TotalCharges"].isna().sum() == 11
    assert frame["TotalCharges"].iloc[11] == pytest.approx(40.85)
    # Blank fields are missing at read time; the note counts them where a column was re-typed.
    assert str(frame["Partner"].dtype) == "boolean"
    assert frame["Partner"].isna().sum() == len(range(0, 200, 17))
    assert "'Partner': read as boolean; 12 blank values are missing" in result.notes
    assert pd.api.types.is_datetime64_any_dtype(frame["signup"])
    assert "'signup': read as dates (data.date_column)" in result.notes


def test_stripped_blank_text_in_a_numeric_column_is_counted(tmp_path):
    path = write(tmp_path, 'id,charges,y\n1,"  ",0\n2,3.5,1\n3,4.5,0\n4,"x ",1\n')
    result = ingest(path, "y", csv=CsvConfig(missing_values=["x"]))
    assert pd.api.types.is_float_dtype(result.frame["charges"])
    assert result.frame["charges"].isna().sum() == 2


def test_features_numeric_with_text_values_fails_at_ingest_naming_them(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,0\n2,-,1\n3,4,0\n4,unknown,1\n")
    with pytest.raises(DataError) as error:
        ingest(path, "y", csv=CsvConfig(), numeric=["b"])
    assert "features.numeric names 'b', but 2 values are not numbers, e.g. ['-', 'unknown']" \
        in str(error.value)
    ok = ingest(path, "y", csv=CsvConfig(missing_values=["-", "unknown"]), numeric=["b"])
    assert ok.frame["b"].isna().sum() == 2


def test_misnamed_columns_fail_at_the_start_with_a_did_you_mean(tmp_path):
    path = write(tmp_path, table())
    with pytest.raises(DataError, match=r"target column 'incme' is not in the data \(did you mean 'income'\?\)"):
        ingest(path, "incme", csv=CsvConfig())
    config = load_config(None, {"fairness.sensitive_attributes": [{"column": "Sex"}],
                                "features.categorical": ["workclas"],
                                "train.candidates": [{"name": "a", "family": "logistic_regression"}]})
    with pytest.raises(DataError) as error:
        ingest(path, "income", csv=CsvConfig(), configured=configured_columns(config))
    assert str(error.value) == "features.categorical names 'workclas', which is not in the data (did you mean " \
                               "'workclass'?)"
    # A sensitive attribute is checked by validate (never cached), with the same message: a setting only
    # evaluate uses must not be part of the cached ingest task's key.
    from tollgate.registry import open_registry
    from tollgate.settings import ValidateSettings
    from tollgate.steps.validate import run_validate

    config = load_config(None, {"fairness.sensitive_attributes": [{"column": "Sex"}], "data.target": "income",
                                "train.candidates": [{"name": "a", "family": "logistic_regression"}]})
    frame = ingest(path, "income", csv=CsvConfig(), configured=configured_columns(config)).frame
    with pytest.raises(DataError) as error:
        run_validate(frame, ValidateSettings.from_config(config), open_registry(str(tmp_path / "registry")), "m")
    assert str(error.value) == "fairness.sensitive_attributes names 'Sex', which is not in the data (did you mean " \
                               "'sex'?)"


def test_detect_separator_falls_back_to_comma_on_one_column():
    assert detect_separator("value\n1\n2\n3\n") == ","
    assert detect_separator("a;b;c\n1;2;3\n4;5;6\n") == ";"
