"""Preprocess: feature roles, the input schema, and stratified seeded splits."""

import numpy as np
import pandas as pd
import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.errors import DataError
from tollgate.serving.schema import MISSING_CATEGORY, InputSchema, feeds_from_inputs, model_inputs
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
    transformer = build_preprocessor(spec).fit(model_inputs(splits.train, spec.schema))
    unseen = splits.test[spec.columns].head(5).copy()
    unseen["region"] = "atlantis"
    unseen.loc[unseen.index[0], "annual_income"] = np.nan
    out = transformer.transform(model_inputs(unseen, spec.schema))
    assert out.shape[0] == 5 and np.isfinite(out).all()
    # An unseen category encodes as all zeros in the region block.
    region = [i for i, name in enumerate(transformer.get_feature_names_out()) if name.startswith("region_")]
    assert region and not out[:, region].any()


def test_missing_categories_have_their_own_bucket_and_the_cap_holds(frame):
    data = frame.copy()
    data.loc[data.index[:40], "region"] = None
    spec = spec_for(data, max_categories=3)
    transformer = build_preprocessor(spec).fit(model_inputs(data, spec.schema))
    region = [n for n in transformer.get_feature_names_out() if n.startswith("region_")]
    assert len(region) == 4 and "region___missing__" in region


def test_server_and_pipeline_make_the_same_model_inputs():
    """The cast layer has two entry points, one per caller; both must give the graph the same tensors."""
    table = pd.DataFrame({
        "income": [1.5, np.nan, 3.0, 1e20, 0.1 + 0.2],
        "count": pd.Series([1, 2, 3, 4, 2**40], dtype="int64"),
        "flag": [True, False, True, True, False],
        "kind": ["a", None, "b", "__missing__", "ç"],
        "code": pd.Series([1, 2, 3, 4, 5], dtype="int64"),
        "score": [1.0, np.nan, 2.5, 3.0, 1e-7],
        "city": ["oslo", "lima", "oslo", "ürümqi", "x y"],
    })
    schema_dict = {"columns": [
        {"name": "income", "role": "numeric", "dtype": "float64", "nullable": True},
        {"name": "count", "role": "numeric", "dtype": "int64", "nullable": False},
        {"name": "flag", "role": "categorical", "dtype": "bool", "nullable": False},
        {"name": "kind", "role": "categorical", "dtype": "string", "nullable": True},
        {"name": "code", "role": "categorical", "dtype": "int64", "nullable": False},
        {"name": "score", "role": "categorical", "dtype": "float64", "nullable": True},
        {"name": "city", "role": "categorical", "dtype": "string", "nullable": False},
    ]}
    from_pipeline = feeds_from_inputs(model_inputs(table, schema_dict))
    schema = InputSchema.from_dict(schema_dict)
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else (v.item() if hasattr(v, "item") else v))
                for k, v in row.items()} for row in table.to_dict("records")]
    from_server = schema.model_feeds(schema.columns_from_instances(records))
    assert from_pipeline.keys() == from_server.keys()
    for name in from_pipeline:
        assert from_pipeline[name].shape == from_server[name].shape == (5, 1)
        assert from_pipeline[name].dtype == from_server[name].dtype
        np.testing.assert_array_equal(from_pipeline[name], from_server[name], err_msg=name)
    assert from_server["income"].dtype == np.float32 and from_server["kind"].dtype == object
    assert from_server["kind"][:, 0].tolist() == ["a", MISSING_CATEGORY, "b", MISSING_CATEGORY, "ç"]
    assert from_server["flag"][:, 0].tolist() == ["True", "False", "True", "True", "False"]
    assert from_server["score"][:, 0].tolist() == ["1.0", MISSING_CATEGORY, "2.5", "3.0", "1e-07"]
