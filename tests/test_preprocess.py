"""Preprocess: feature roles, the input schema, and stratified seeded splits."""

import numpy as np
import pandas as pd
import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.errors import DataError
from tollgate.steps.preprocess import LABEL, build_feature_spec, build_preprocessor, infer_feature_roles, split_dataset


@pytest.fixture(scope="module")
def frame():
    return generate_applicants(rows=3000, seed=11)


def spec_for(frame, **kwargs):
    return build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date", **kwargs)


def test_roles_are_inferred_from_dtypes(frame):
    spec = spec_for(frame)
    assert "annual_income" in spec.numeric and "age" in spec.numeric
    assert {"employment_type", "region", "has_mortgage", "prior_bankruptcy"} <= set(spec.categorical)
    # The target, dropped ids and the date column never become features.
    assert not {"defaulted", "applicant_id", "application_date"} & set(spec.columns)


def test_configured_roles_override_inference(frame):
    numeric, categorical = infer_feature_roles(frame, ["defaulted", "application_date"],
                                               categorical=["num_dependents", "region"])
    assert "num_dependents" in categorical and "num_dependents" not in numeric
    assert categorical == ["num_dependents", "region"]


def test_unknown_or_conflicting_configured_columns_fail(frame):
    with pytest.raises(DataError, match=r"not in the data: \['nope'\]"):
        infer_feature_roles(frame, [], numeric=["nope"])
    with pytest.raises(DataError, match="both numeric and categorical"):
        infer_feature_roles(frame, [], numeric=["age"], categorical=["age"])


def test_input_schema_describes_types_and_categories(frame):
    schema = {c["name"]: c for c in spec_for(frame).schema["columns"]}
    assert schema["age"]["dtype"] == "int64" and schema["age"]["role"] == "numeric"
    assert schema["credit_score"]["dtype"] == "float64" and schema["credit_score"]["nullable"]
    assert schema["has_mortgage"]["dtype"] == "bool"
    assert set(schema["employment_type"]["categories"]) == set(frame["employment_type"].unique())


def test_split_is_stratified_seeded_and_disjoint(frame):
    spec = spec_for(frame)
    splits = split_dataset(frame, spec, test_size=0.2, validation_size=0.2, seed=5)
    sizes = [len(splits.train), len(splits.validation), len(splits.test)]
    assert sum(sizes) == len(frame)
    assert sizes[2] == 600 and sizes[1] == 600
    overall = frame["defaulted"].mean()
    for part in (splits.train, splits.validation, splits.test):
        assert abs(part[LABEL].mean() - overall) < 0.01
        assert list(part.columns) == spec.columns + [LABEL]
    again = split_dataset(frame, spec, test_size=0.2, validation_size=0.2, seed=5)
    pd.testing.assert_frame_equal(splits.test, again.test)
    other = split_dataset(frame, spec, test_size=0.2, validation_size=0.2, seed=6)
    assert not splits.test.equals(other.test)


def test_split_refuses_a_class_too_rare_to_split(frame):
    tiny = frame.assign(defaulted=0)
    tiny.loc[:1, "defaulted"] = 1
    with pytest.raises(DataError, match="rarer class has only 2 rows"):
        split_dataset(tiny, spec_for(tiny), 0.2, 0.2, 0)


def test_preprocessor_fits_on_train_and_tolerates_unseen_categories(frame):
    spec = spec_for(frame)
    splits = split_dataset(frame, spec, 0.2, 0.2, 0)
    transformer = build_preprocessor(spec).fit(splits.train[spec.columns])
    unseen = splits.test[spec.columns].head(5).copy()
    unseen["region"] = "atlantis"
    unseen.loc[unseen.index[0], "annual_income"] = np.nan
    out = transformer.transform(unseen)
    assert out.shape[0] == 5 and np.isfinite(out).all()
