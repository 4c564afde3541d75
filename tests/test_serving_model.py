"""TollgateModel in-process: where versions load from, the compiled path and its fallback, column policy."""

from __future__ import annotations

import json
import shutil

import joblib
import numpy as np
import pytest
from kserve.errors import InvalidInput

from tollgate.data.builtin import generate_applicants
from tollgate.errors import TollgateError
from tollgate.serving.model import TollgateModel
from tollgate.serving.source import fetch_registered, fetch_version_uri

MODEL = "credit-default"


@pytest.fixture(scope="module")
def frame(trained_model_dir):
    names = [c["name"] for c in json.loads((trained_model_dir / "input_schema.json").read_text())["columns"]]
    return generate_applicants(rows=30, seed=555)[names]


def _records(frame):
    return [{k: (None if isinstance(v, float) and np.isnan(v) else (v.item() if hasattr(v, "item") else v))
             for k, v in row.items()} for row in frame.to_dict("records")]


def _proba(model: TollgateModel, rows) -> np.ndarray:
    batch = model.preprocess({"instances": rows})
    return np.array([p["probability"] for p in model.predict(batch)["predictions"]])


def test_compiled_path_is_used_and_equals_the_pipeline(trained_model_dir, frame):
    model = TollgateModel(MODEL, trained_model_dir)
    model.load()
    assert model.compiled is not None, model.path_description
    assert model.path_description.startswith("compiled numpy path")
    expected = joblib.load(trained_model_dir / "model.joblib").predict_proba(frame)[:, 1]
    np.testing.assert_allclose(_proba(model, _records(frame)), expected, rtol=0, atol=1e-12)


def test_pipeline_of_another_shape_falls_back_to_the_dataframe_path(trained_model_dir, frame, tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    schema = json.loads((trained_model_dir / "input_schema.json").read_text())
    numeric = [c["name"] for c in schema["columns"] if c["role"] == "numeric"]
    categorical = [c["name"] for c in schema["columns"] if c["role"] != "numeric"]
    training = generate_applicants(rows=400, seed=3)
    other = Pipeline([
        ("preprocess", ColumnTransformer([("numeric", "passthrough", numeric),
                                          ("categorical", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                                         unknown_value=-1), categorical)])),
        ("model", HistGradientBoostingClassifier(max_iter=20)),
    ]).fit(training[numeric + categorical].astype({c: str for c in categorical}), training["defaulted"])
    version = tmp_path / "v1"
    version.mkdir()
    joblib.dump(other, version / "model.joblib")
    shutil.copy(trained_model_dir / "input_schema.json", version / "input_schema.json")
    model = TollgateModel(MODEL, version)
    model.load()
    assert model.compiled is None
    assert model.path_description.startswith("DataFrame path")
    rows = [r for r in _records(frame) if all(v is not None for v in r.values())][:5]
    typed = frame.dropna().head(5).astype({c: str for c in categorical})
    np.testing.assert_allclose(_proba(model, rows), other.predict_proba(typed)[:, 1], rtol=0, atol=1e-12)


def test_unknown_columns_can_be_ignored(trained_model_dir, frame):
    rows = _records(frame.head(2))
    for row in rows:
        row["zodiac"] = "leo"
    strict = TollgateModel(MODEL, trained_model_dir)
    strict.load()
    with pytest.raises(InvalidInput, match="zodiac"):
        strict.preprocess({"instances": rows})
    lenient = TollgateModel(MODEL, trained_model_dir, unknown_columns="ignore")
    lenient.load()
    clean = [{k: v for k, v in row.items() if k != "zodiac"} for row in rows]
    np.testing.assert_array_equal(_proba(lenient, rows), _proba(strict, clean))


def test_missing_files_say_what_is_missing(tmp_path):
    model = TollgateModel(MODEL, tmp_path)
    with pytest.raises(Exception, match="missing model.joblib, input_schema.json"):
        model.load()


def test_loads_from_an_s3_version_uri_and_a_registry_alias(trained_model_dir, frame, s3_bucket, tmp_path):
    from tollgate.registry import open_registry

    registry = open_registry(f"s3://{s3_bucket}/models")
    staged = tmp_path / "staged"
    staged.mkdir()
    for name in ("model.joblib", "input_schema.json"):
        shutil.copy(trained_model_dir / name, staged / name)
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    version = registry.register(MODEL, staged, {k: v for k, v in metadata.items() if k not in ("version", "created_at")})
    registry.promote(MODEL, version.version)
    expected = joblib.load(trained_model_dir / "model.joblib").predict_proba(frame)[:, 1]

    by_uri = fetch_version_uri(version.uri, tmp_path / "by-uri")
    by_alias, number = fetch_registered(registry.uri, MODEL, "production", tmp_path / "by-alias")
    assert number == version.version
    for directory in (by_uri, by_alias):
        model = TollgateModel(MODEL, directory)
        model.load()
        assert model.version == str(version.version)
        np.testing.assert_allclose(_proba(model, _records(frame)), expected, rtol=0, atol=1e-12)


def test_bad_sources_are_explained(tmp_path):
    with pytest.raises(TollgateError, match="does not exist"):
        fetch_version_uri(str(tmp_path / "nowhere"))
    with pytest.raises(TollgateError, match="<model>/v<N>"):
        fetch_version_uri("s3://bucket/not-a-version")
