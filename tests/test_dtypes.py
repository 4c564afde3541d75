"""One dtype classifier: preprocess's feature roles, the input schema the server enforces and
validate's data schema give every column the same kind (``tollgate.steps.dtypes.column_kind``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tollgate.serving.schema import InputSchema, model_inputs
from tollgate.steps.dtypes import column_kind
from tollgate.steps.preprocess import build_feature_spec
from tollgate.steps.validate import infer_data_schema, validate

ROWS = 40

# column -> the kind every user must see
EXPECTED = {
    "nullable_bool": "bool",        # pandas "boolean" with NA
    "object_bool": "bool",          # object column of True/False/None (Parquet's nullable bool read by pandas)
    "numpy_bool": "bool",
    "nullable_int": "numeric",      # Int64 with NA
    "float_na": "numeric",
    "object_int": "numeric",        # object column of Python ints and None (JSON records)
    "category": "string",           # category dtype, even with numeric categories
    "numeric_text": "string",       # text that looks like numbers stays text
    "text": "string",
    "all_na": "string",             # nothing says it is anything else
    "when": "datetime",
    "object_dates": "datetime",     # object column of datetime.date
}
# What the input schema's dtype must be for each kind (numeric: its width).
SCHEMA_DTYPES = {"bool": {"bool"}, "string": {"string"}, "numeric": {"int64", "float64"}}


def _tricky_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    flags = [bool(v) for v in rng.integers(0, 2, ROWS)]
    flags_with_gaps = [None if i % 7 == 0 else f for i, f in enumerate(flags)]
    return pd.DataFrame({
        "nullable_bool": pd.array(flags_with_gaps, dtype="boolean"),
        "object_bool": pd.Series(flags_with_gaps, dtype=object),
        "numpy_bool": np.array(flags),
        "nullable_int": pd.array([None if i % 5 == 0 else i % 9 for i in range(ROWS)], dtype="Int64"),
        "float_na": [np.nan if i % 4 == 0 else i / 3 for i in range(ROWS)],
        "object_int": pd.Series([None if i % 6 == 0 else i % 4 for i in range(ROWS)], dtype=object),
        "category": pd.Categorical([i % 3 for i in range(ROWS)]),
        "numeric_text": [str(i % 5) for i in range(ROWS)],
        "text": [("rent", "own", "other")[i % 3] for i in range(ROWS)],
        "all_na": pd.Series([None] * ROWS, dtype=object),
        "when": pd.date_range("2026-01-01", periods=ROWS, freq="D"),
        "object_dates": pd.Series([dt.date(2026, 1, 1 + i % 28) for i in range(ROWS)], dtype=object),
        "label": [i % 2 for i in range(ROWS)],
    })


def test_every_user_gives_the_same_kind_to_the_tricky_columns():
    frame = _tricky_frame()
    classifier = {name: column_kind(frame[name]) for name in EXPECTED}
    assert classifier == EXPECTED

    # validate: the data schema's family of each column
    data_schema = infer_data_schema(frame, "label", 1)
    families = {c.name: c.family for c in data_schema.columns if c.name in EXPECTED}
    assert families == EXPECTED

    # preprocess: feature roles and the input schema the server enforces
    spec = build_feature_spec(frame, "label", 1, drop=[], date_column=None)
    roles = {name: "numeric" for name in spec.numeric} | {name: "categorical" for name in spec.categorical}
    expected_roles = {name: {"numeric": "numeric", "datetime": None}.get(kind, "categorical")
                      for name, kind in EXPECTED.items()}
    assert {name: roles.get(name) for name in EXPECTED} == expected_roles
    schema_dtypes = {c["name"]: c["dtype"] for c in spec.schema["columns"]}
    for name, kind in EXPECTED.items():
        if kind != "datetime":
            assert schema_dtypes[name] in SCHEMA_DTYPES[kind], (name, schema_dtypes[name])
    assert schema_dtypes["nullable_int"] == schema_dtypes["object_int"] == "int64"


def test_a_boolean_column_with_gaps_takes_json_booleans_and_feeds_the_graph_as_training_did():
    """Issue 12's case: an object column of True/False with blanks was described as text, so the
    server refused the booleans a client sends for it."""
    frame = _tricky_frame()
    spec = build_feature_spec(frame, "label", 1, drop=[], date_column=None)
    schema = InputSchema.from_dict(spec.schema)
    rows = frame[spec.columns].head(8)
    # What a client sends: JSON booleans and numbers for bool and numeric columns, text for string ones.
    records = [{k: None if pd.isna(v) else str(v) if EXPECTED[k] == "string" else v.item() if hasattr(v, "item") else v
                for k, v in row.items()} for row in rows.astype(object).to_dict("records")]
    served = schema.model_feeds(schema.columns_from_instances(records))
    trained = model_inputs(rows, spec.schema)
    for name in ("object_bool", "nullable_bool", "object_int"):
        np.testing.assert_array_equal(served[name].reshape(-1), trained[name].to_numpy(), err_msg=name)


@pytest.mark.parametrize("stored_as", ["object_bool", "nullable_bool", "numpy_bool"])
def test_the_same_booleans_stored_another_way_are_no_dtype_change(stored_as):
    frame = _tricky_frame()
    reference = infer_data_schema(frame.drop(columns=["numpy_bool", "object_bool"]), "label", 1)
    new = frame.drop(columns=[c for c in ("numpy_bool", "object_bool") if c != stored_as])
    new = new.drop(columns=["nullable_bool"]).rename(columns={stored_as: "nullable_bool"}) \
        if stored_as != "nullable_bool" else new
    report = validate(new, reference, target="label", positive_label=1, min_rows=10)
    assert not [a for a in report.anomalies if a.check == "dtype_change"], [a.message() for a in report.anomalies]
