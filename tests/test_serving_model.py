"""TollgateModel in-process: where versions load from, the ONNX graph it serves, column policy."""

from __future__ import annotations

import json
import pickle
import re
import shutil

import joblib
import numpy as np
import pytest
from kserve.errors import InvalidInput

from tollgate.data.builtin import generate_applicants
from tollgate.errors import TollgateError
from tollgate.serving.model import ModelLoadError, TollgateModel
from tollgate.serving.runtime import OnnxModel
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


def _graph_proba(version_dir, frame) -> np.ndarray:
    schema = json.loads((version_dir / "input_schema.json").read_text())
    return OnnxModel.from_file(version_dir / "model.onnx", schema).predict_proba(frame)[:, 1].astype(np.float64)


def test_serves_the_onnx_graph_exactly_and_within_float32_of_the_pipeline(trained_model_dir, frame):
    model = TollgateModel(MODEL, trained_model_dir)
    model.load()
    assert model.path_description.startswith("onnxruntime")
    assert model.graph.session.get_session_options().intra_op_num_threads == 1
    served = _proba(model, _records(frame))
    # The server's schema code and the pipeline's make the same inputs: identical numbers.
    np.testing.assert_array_equal(served, _graph_proba(trained_model_dir, frame))
    # The test reads the training artifact to check the float32 contract; no serving path does.
    from tollgate.serving.schema import model_inputs

    pipeline = joblib.load(trained_model_dir / "model.joblib")
    schema = json.loads((trained_model_dir / "input_schema.json").read_text())
    expected = pipeline.predict_proba(model_inputs(frame, schema))[:, 1]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)


def test_serving_never_unpickles_the_training_artifact(trained_model_dir, frame, tmp_path):
    # A tampered model.joblib beside the graph: serving must not run it.
    version = tmp_path / "v1"
    shutil.copytree(trained_model_dir, version)
    marker = tmp_path / "pickle-ran"
    with open(version / "model.joblib", "wb") as handle:
        pickle.dump(_WritesMarker(str(marker)), handle)
    model = TollgateModel(MODEL, version)
    model.load()
    _proba(model, _records(frame.head(3)))
    assert not marker.exists()
    pickle.loads((version / "model.joblib").read_bytes())  # the payload is live: loading it would have run it
    assert marker.exists()


class _WritesMarker:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_graph_whose_inputs_differ_from_the_schema_does_not_load(trained_model_dir, tmp_path):
    version = tmp_path / "v1"
    shutil.copytree(trained_model_dir, version)
    schema = json.loads((version / "input_schema.json").read_text())
    schema["columns"][0]["name"] = "renamed_column"
    (version / "input_schema.json").write_text(json.dumps(schema))
    with pytest.raises(ModelLoadError, match=r"missing \['renamed_column'\]"):
        TollgateModel(MODEL, version).load()
    (version / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load the graph"):
        TollgateModel(MODEL, version).load()


def test_the_version_metadata_is_read_as_its_record_older_files_included(trained_model_dir, tmp_path):
    # metadata.json as versions registered before the record was versioned (untagged) still loads, with
    # its version and labels; one written by a newer Tollgate does not load, and the error says why.
    version = tmp_path / "v7"
    shutil.copytree(trained_model_dir, version)
    metadata = json.loads((version / "metadata.json").read_text())
    untagged = {k: v for k, v in metadata.items() if k not in ("record", "record_version")} | {"version": 7}
    (version / "metadata.json").write_text(json.dumps(untagged))
    model = TollgateModel(MODEL, version)
    model.load()
    assert model.version == "7" and model.class_order == [0, 1]
    (version / "metadata.json").write_text(json.dumps({**untagged, "record": "version_metadata", "record_version": 99}))
    with pytest.raises(ModelLoadError, match="format 99, written by a newer Tollgate"):
        TollgateModel(MODEL, version).load()
    # A nested value of the wrong shape (the gate's verdict without its reasons) is a load error naming
    # the file, not a TypeError from the record's constructor.
    (version / "metadata.json").write_text(json.dumps({**untagged, "gate": {"passed": True}}))
    with pytest.raises(ModelLoadError, match=rf"^{re.escape(str(version / 'metadata.json'))}: version_metadata "
                                             r"record is malformed: .*'reasons'"):
        TollgateModel(MODEL, version).load()


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
    with pytest.raises(ModelLoadError, match="missing model.onnx, input_schema.json"):
        model.load()


def test_loads_from_an_s3_version_uri_and_a_registry_alias(trained_model_dir, frame, s3_bucket, tmp_path):
    from tollgate.registry import open_registry

    registry = open_registry(f"s3://{s3_bucket}/models")
    staged = tmp_path / "staged"
    staged.mkdir()
    for name in ("model.onnx", "input_schema.json"):
        shutil.copy(trained_model_dir / name, staged / name)
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    version = registry.register(MODEL, staged, {k: v for k, v in metadata.items() if k not in ("version", "created_at")})
    registry.promote(MODEL, version.version)
    expected = _graph_proba(trained_model_dir, frame)

    by_uri = fetch_version_uri(version.uri, tmp_path / "by-uri")
    by_alias, number = fetch_registered(registry.uri, MODEL, "production", tmp_path / "by-alias")
    assert number == version.version
    for directory in (by_uri, by_alias):
        model = TollgateModel(MODEL, directory)
        model.load()
        assert model.version == str(version.version)
        np.testing.assert_array_equal(_proba(model, _records(frame)), expected)


def test_bad_sources_are_explained(tmp_path):
    with pytest.raises(TollgateError, match="does not exist"):
        fetch_version_uri(str(tmp_path / "nowhere"))
    with pytest.raises(TollgateError, match="<model>/v<N>"):
        fetch_version_uri("s3://bucket/not-a-version")
