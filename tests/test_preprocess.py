"""Preprocess: feature roles, the input schema, and stratified seeded splits."""

import numpy as np
import pandas as pd
import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.errors import DataError
from tollgate.serving.schema import MISSING_CATEGORY, InputSchema, feeds_from_inputs, model_inputs
from tollgate.steps.preprocess import (
    LABEL,
    build_feature_spec,
    build_preprocessor,
    infer_feature_roles,
    split_dataset,
    stratified_indices,
)


@pytest.fixture(scope="module")
def frame():
    return generate_applicants(rows=3000, seed=11)


def spec_for(frame, **kwargs):
    return build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date", **kwargs)


# The built-in table's features by dtype, in column order (tollgate/data/builtin.py).
BUILTIN_NUMERIC = ["age", "annual_income", "employment_years", "num_dependents", "credit_score",
                   "credit_history_months", "num_credit_lines", "num_delinquencies_2y", "num_inquiries_6m",
                   "revolving_utilization", "debt_to_income", "requested_limit", "existing_balance",
                   "months_at_address"]
BUILTIN_CATEGORICAL = ["gender", "employment_type", "home_ownership", "has_mortgage", "marital_status", "education",
                       "region", "channel", "card_type", "prior_bankruptcy"]


def test_roles_are_inferred_from_dtypes(frame):
    spec = spec_for(frame)
    # Numbers are numeric, booleans and text are categorical, in the table's column order; the target,
    # the dropped id and the date column never become features.
    assert spec.numeric == BUILTIN_NUMERIC
    assert spec.categorical == BUILTIN_CATEGORICAL
    assert spec.columns == BUILTIN_NUMERIC + BUILTIN_CATEGORICAL
    assert (spec.target, spec.positive_label, spec.negative_label, spec.task) == ("defaulted", 1, 0, "binary")


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
    spec = spec_for(frame)
    assert [c["name"] for c in spec.schema["columns"]] == spec.columns  # schema order is the model's input order
    schema = {c["name"]: c for c in spec.schema["columns"]}
    assert schema["age"] == {"name": "age", "role": "numeric", "dtype": "int64", "nullable": False}
    # 48 of these rows lack a credit score, so the column is nullable; one with no gaps is not.
    assert schema["credit_score"] == {"name": "credit_score", "role": "numeric", "dtype": "float64", "nullable": True}
    assert schema["debt_to_income"] == {"name": "debt_to_income", "role": "numeric", "dtype": "float64",
                                        "nullable": False}
    assert schema["has_mortgage"] == {"name": "has_mortgage", "role": "categorical", "dtype": "bool",
                                      "nullable": False, "categories": ["False", "True"]}
    # Categories are the training values as text, most frequent first (62% salaried ... 6% retired).
    assert schema["employment_type"] == {"name": "employment_type", "role": "categorical", "dtype": "string",
                                         "nullable": False,
                                         "categories": ["salaried", "self_employed", "contract", "unemployed",
                                                        "retired"]}
    counts = frame["employment_type"].value_counts()
    assert list(counts[schema["employment_type"]["categories"]]) == sorted(counts, reverse=True)
    # A text column with gaps: nullable, and a gap is not a category.
    assert schema["education"]["nullable"] and frame["education"].isna().sum() == 78
    assert sorted(schema["education"]["categories"]) == ["bachelor", "doctorate", "high_school", "master", "other"]


def test_max_categories_caps_what_the_schema_keeps(frame):
    # The schema keeps up to 4 x max_categories categories (the encoder uses max_categories of them).
    spec = spec_for(frame, max_categories=1)
    schema = {c["name"]: c for c in spec.schema["columns"]}
    assert schema["employment_type"]["categories"] == ["salaried", "self_employed", "contract", "unemployed"]
    assert spec.max_categories == 1


def _parts(splits):
    return {"train": splits.train, "validation": splits.validation, "test": splits.test}


def test_split_is_stratified_seeded_and_disjoint(frame):
    spec = spec_for(frame)
    # applicant_id rides along (as a sensitive attribute would) so rows can be traced to the table.
    splits = split_dataset(frame, spec, test_size=0.2, validation_size=0.2, seed=5, extra_columns=["applicant_id"])
    parts = _parts(splits)
    # 20% test, 20% validation (a quarter of the rest), the remainder train.
    assert {name: len(part) for name, part in parts.items()} == {"train": 1800, "validation": 600, "test": 600}
    # No row in two splits, and every row in one: the ids partition the table.
    ids = {name: set(part["applicant_id"]) for name, part in parts.items()}
    assert sum(len(v) for v in ids.values()) == len(frame) == frame["applicant_id"].nunique()
    assert set.union(*ids.values()) == set(frame["applicant_id"])
    # Stratified: each split holds its share of the 613 defaults to the row (scikit-learn rounds per class;
    # train is what is left after two roundings). An unstratified 600-row split is off by ~10.
    positives = int(frame["defaulted"].sum())
    assert positives == 613
    for name, part in parts.items():
        expected = positives * len(part) / len(frame)
        assert abs(int(part[LABEL].sum()) - expected) <= (2 if name == "train" else 1), (name, part[LABEL].sum())
    by_id = frame.set_index("applicant_id")
    for name, part in parts.items():
        # Model columns in schema order, then the riders, then the 0/1 label; values untouched.
        assert list(part.columns) == spec.columns + ["applicant_id", LABEL], name
        assert part.index.tolist() == list(range(len(part)))
        source = by_id.loc[part["applicant_id"]]
        assert (part[LABEL].to_numpy() == (source["defaulted"] == 1).astype(int).to_numpy()).all(), name
        pd.testing.assert_frame_equal(part[spec.columns].reset_index(drop=True),
                                      source[spec.columns].reset_index(drop=True), obj=name)
    # Seeded: the same seed gives the same rows in the same order in every split; another seed another split.
    again = _parts(split_dataset(frame, spec, test_size=0.2, validation_size=0.2, seed=5,
                                 extra_columns=["applicant_id"]))
    for name in parts:
        pd.testing.assert_frame_equal(parts[name], again[name], obj=name)
    other = _parts(split_dataset(frame, spec, test_size=0.2, validation_size=0.2, seed=6,
                                 extra_columns=["applicant_id"]))
    for name in parts:
        assert set(other[name]["applicant_id"]) != ids[name], name


def test_stratified_indices_hold_out_each_class_in_proportion_within_its_bounds():
    # A seeded sample of random tables (400 draws, well under a second). Every draw partitions the
    # rows, holds out ceil(holdout * n) where it can, honours the bounds (one held-out row for every
    # class with more than `keep` rows, `keep` rows kept) and keeps each class's count within one
    # row of its share unless a bound forces it.
    rng = np.random.default_rng(2026)
    for _ in range(400):
        classes = int(rng.integers(1, 8))
        labels = rng.choice(classes, size=int(rng.integers(classes, 300)), p=rng.dirichlet(np.ones(classes)))
        holdout, keep, seed = float(rng.choice([0.1, 0.2, 0.25, 0.3, 0.5])), int(rng.integers(1, 3)), int(rng.integers(1000))
        kept, held = stratified_indices(labels, holdout, seed, keep=keep)
        rows = len(labels)
        assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(rows))
        assert (np.diff(kept) > 0).all() and (np.diff(held) > 0).all()  # the table's row order
        values, counts = np.unique(labels, return_counts=True)
        taken = np.array([(labels[held] == value).sum() for value in values])
        # ceil(holdout * n) rows, unless the classes' kept rows leave fewer to hold out.
        wanted = int(np.ceil(round(holdout * rows, 9)))
        low = (counts > keep).astype(int)
        low = low if low.sum() <= wanted else 0 * low
        assert len(held) == min(wanted, int(np.maximum(counts - keep, low).sum()))
        assert (taken >= low).all() and (counts - taken >= np.minimum(counts, keep)).all()
        share = counts * len(held) / rows
        if ((np.floor(share) >= low) & (np.ceil(share) <= np.maximum(counts - keep, low))).all():
            assert (np.abs(taken - share) < 1).all(), (counts, taken, share)
        again = stratified_indices(labels, holdout, seed, keep=keep)
        assert np.array_equal(again[1], held)
        # Any labels, not only class positions: text labels in the same order split the same rows.
        assert np.array_equal(stratified_indices(labels.astype(str), holdout, seed, keep=keep)[1], held)


def test_a_rare_class_is_held_out_once_where_proportion_would_round_it_away():
    labels = np.array([0] * 48 + [1] * 50 + [2] * 2)  # class 2's share of 10 held-out rows: 0.2
    kept, held = stratified_indices(labels, 0.1, seed=0, keep=1)
    assert [int((labels[held] == c).sum()) for c in (0, 1, 2)] == [4, 5, 1]
    assert [len(part) for part in stratified_indices(np.array([], dtype=np.int64), 0.2, seed=0)] == [0, 0]
    # Without enough held-out rows for every class, no minimum: proportions decide.
    kept, held = stratified_indices(np.repeat(np.arange(10), 3), 0.2, seed=0, keep=1)
    assert len(held) == 6 and len(np.unique(np.repeat(np.arange(10), 3)[held])) == 6


def test_test_only_columns_reach_the_test_split_only(frame):
    # The champion may need a column this run dropped: it rides in the test split alone.
    spec = spec_for(frame)
    splits = split_dataset(frame, spec, 0.2, 0.2, 0, extra_columns=["gender", "applicant_id"],
                           test_only_columns=["application_date", "applicant_id", "defaulted"])
    # gender is already a model column and the target never rides along; applicant_id is already an extra.
    assert list(splits.train.columns) == spec.columns + ["applicant_id", LABEL]
    assert list(splits.validation.columns) == spec.columns + ["applicant_id", LABEL]
    assert list(splits.test.columns) == spec.columns + ["applicant_id", "application_date", LABEL]
    dates = frame.set_index("applicant_id").loc[splits.test["applicant_id"], "application_date"]
    assert (splits.test["application_date"].to_numpy() == dates.to_numpy()).all()
    with pytest.raises(DataError, match=r"columns \['nope'\] asked for beside the model columns are not in the data"):
        split_dataset(frame, spec, 0.2, 0.2, 0, extra_columns=["nope"])


def test_split_names_model_columns_the_table_lacks(frame):
    # A spec from another table: positional indexing would read a missing column as the last one.
    spec = spec_for(frame)
    with pytest.raises(DataError, match=r"columns \['age'\] are not in the data"):
        split_dataset(frame.drop(columns="age"), spec, 0.2, 0.2, 0)


def test_split_refuses_a_class_too_rare_to_split(frame):
    tiny = frame.assign(defaulted=0)
    tiny.loc[:1, "defaulted"] = 1
    with pytest.raises(DataError, match="rarer class has only 2 rows"):
        split_dataset(tiny, spec_for(tiny), 0.2, 0.2, 0)
    # No positive row at all is the rarest case, not a table of one class that passes.
    with pytest.raises(DataError, match="rarer class has only 0 rows"):
        split_dataset(frame.assign(defaulted=0), spec_for(frame), 0.2, 0.2, 0)


def test_preprocessor_fits_on_train_and_tolerates_unseen_categories(frame):
    spec = spec_for(frame)
    splits = split_dataset(frame, spec, 0.2, 0.2, 0)
    train_inputs = model_inputs(splits.train, spec.schema)
    transformer = build_preprocessor(spec).fit(train_inputs)
    names = list(transformer.get_feature_names_out())
    unseen = splits.test[spec.columns].head(5).copy()
    unseen["region"] = "atlantis"
    unseen.loc[unseen.index[1], "region"] = "north"
    unseen.loc[unseen.index[0], "annual_income"] = np.nan
    out = transformer.transform(model_inputs(unseen, spec.schema))
    assert out.shape == (5, len(names)) and np.isfinite(out).all()
    # An unseen category encodes as all zeros in the region block; a known one as a single 1.
    region = [i for i, name in enumerate(names) if name.startswith("region_")]
    assert [names[i] for i in region] == [f"region_{c}" for c in ["south", "west", "north", "east", "central"]]
    assert not out[[0, 2, 3, 4]][:, region].any()
    assert out[1, region].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    # Numerics are imputed with the *train* median and scaled by the *train* mean and spread.
    income = train_inputs["annual_income"].to_numpy(dtype=np.float64)
    median = np.nanmedian(income)
    imputed = np.where(np.isnan(income), median, income)
    expected = (median - imputed.mean()) / imputed.std()
    assert out[0, names.index("annual_income")] == pytest.approx(expected, rel=1e-4)
    scaled = transformer.transform(train_inputs)[:, : len(spec.numeric)]
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=0), 1, atol=1e-4)


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


def _every_dtype(rows: int, seed: int) -> pd.DataFrame:
    # Every kind of column a raw table can bring, with gaps: what the preprocess task reads back.
    rng = np.random.default_rng(seed)
    table = generate_applicants(rows=rows, seed=seed)
    gaps = rng.random(rows) < 0.1
    return table.assign(
        band=pd.Categorical(rng.choice(["a", "b", "c"], rows)),
        maybe=pd.array(np.where(gaps, None, rng.integers(0, 9, rows)), dtype="Int64"),
        answered=pd.array(np.where(gaps, None, rng.random(rows) < 0.5), dtype="boolean"),
        note=pd.array(np.where(gaps, None, rng.choice(["x", "y"], rows)), dtype="string"),
        seen=pd.date_range("2026-01-01", periods=rows, freq="h", tz="Europe/Berlin"),
        risk=rng.choice(["low", "mid", "high"], rows),
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("target, raw_format", [("defaulted", "arrow"), ("risk", "arrow"), ("defaulted", "parquet")])
@pytest.mark.parametrize("uri", [None, "/kfp/local/run/preprocess/train"])
def test_the_task_writes_from_arrow_exactly_the_splits_pandas_takes(tmp_path, seed, target, raw_format, uri):
    # The preprocess task takes its splits from the Arrow table it read (SplitPlan.take_table); each
    # must read back as the very DataFrame SplitPlan.take gives an in-memory caller: same rows, columns,
    # dtypes (nullable, categorical, time zone) and label. Dropping the table's pandas metadata would
    # turn the nullable integers into floats; a wrong take would move rows or labels.
    from tollgate.artifacts import read_frame, read_table, write_frame, write_table
    from tollgate.steps.preprocess import plan_split

    raw = tmp_path / "raw"
    if raw_format == "arrow":
        write_frame(_every_dtype(600, seed), raw)
    else:  # a raw artifact from before the Arrow format
        _every_dtype(600, seed).to_parquet(raw, index=False)
    table = read_table(raw)
    frame = table.to_pandas()
    drop = ["applicant_id"] + (["defaulted"] if target == "risk" else ["risk"])
    spec = build_feature_spec(frame, target, 1 if target == "defaulted" else None, drop, "application_date")
    plan = plan_split(frame, spec, 0.2, 0.2, seed, extra_columns=["band"], test_only_columns=list(frame.columns))
    expected = plan.take(frame)
    for name in ("train", "validation", "test"):
        write_table(plan.take_table(table, name), tmp_path / name, uri=uri)
        pd.testing.assert_frame_equal(read_frame(tmp_path / name), getattr(expected, name))
    assert {"maybe", "answered", "note", "seen"} <= set(expected.test.columns)  # the test split keeps every column
    assert expected.train[LABEL].nunique() == (2 if target == "defaulted" else 3)
