"""The model server as a real process on 127.0.0.1: round trips, metadata, and bad requests."""

from __future__ import annotations

import json
import math

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.serving.client import predict
from tollgate.serving.process import ServerProcess
from tollgate.serving.runtime import OnnxModel

MODEL = "credit-default"
MAX_BATCH = 64


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else (v.item() if hasattr(v, "item") else v))
             for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture(scope="module")
def schema(trained_model_dir) -> dict:
    return json.loads((trained_model_dir / "input_schema.json").read_text())


@pytest.fixture(scope="module")
def sample(schema) -> pd.DataFrame:
    """Fresh rows (another seed than training), with the missing values the generator makes."""
    names = [c["name"] for c in schema["columns"]]
    return generate_applicants(rows=40, seed=1234)[names].reset_index(drop=True)


@pytest.fixture(scope="module")
def expected(trained_model_dir, schema, sample) -> np.ndarray:
    """What the served graph computes in this process: the server must answer exactly this."""
    return OnnxModel.from_file(trained_model_dir / "model.onnx", schema).predict_proba(sample).astype(np.float64)


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ServerProcess(trained_model_dir, MODEL, max_batch=MAX_BATCH, log_path=log) as process:
        process.wait_ready(timeout=60)
        yield process
    assert process.process.returncode == 0, "the server did not shut down cleanly on SIGTERM"


@pytest.fixture(scope="module")
def version(trained_model_dir) -> str:
    return str(json.loads((trained_model_dir / "metadata.json").read_text())["version"])


@pytest.mark.parametrize("protocol", ["rest-v1", "rest-v2", "grpc"])
def test_round_trip_equals_in_process_predict_proba(server, schema, sample, expected, version, protocol):
    url = server.grpc_url if protocol == "grpc" else server.rest_url
    answer = predict(protocol, url, MODEL, _records(sample))
    assert sample.isna().any().any(), "the sample should exercise missing values"
    np.testing.assert_allclose(answer.probabilities, expected[:, 1], rtol=0, atol=1e-12)
    # The version's decision rule: positive when P(positive) >= its decision_threshold (recorded in its schema).
    assert answer.classes == [1 if p1 >= schema["decision_threshold"] else 0 for _, p1 in expected]
    assert answer.model_version == version
    assert answer.model_name == MODEL


def test_v1_rows_in_schema_order(server, sample, expected, version):
    rows = [list(r.values()) for r in _records(sample.head(5))]
    response = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == version
    np.testing.assert_allclose([p["probability"] for p in body["predictions"]], expected[:5, 1], rtol=0, atol=1e-12)


def test_v2_single_2d_input_in_schema_order(server, sample, expected, version):
    rows = [["" if v is None else str(v) for v in r.values()] for r in _records(sample.head(6))]
    body = {"inputs": [{"name": "rows", "shape": [6, sample.shape[1]], "datatype": "BYTES", "data": rows}]}
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert response.json()["model_version"] == version
    np.testing.assert_allclose(outputs["probability"]["data"], expected[:6, 1], rtol=0, atol=1e-12)
    assert outputs["predicted_class"]["datatype"] == "INT64"


def test_grpc_single_2d_input(server, sample, expected):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    rows = _records(sample.head(3))
    flat = [("" if v is None else str(v)).encode() for r in rows for v in r.values()]
    request = pb.ModelInferRequest(model_name=MODEL, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="rows", datatype="BYTES", shape=[3, sample.shape[1]], contents=pb.InferTensorContents(bytes_contents=flat))])
    with grpc.insecure_channel(server.grpc_url) as channel:
        response = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    outputs = {o.name: o for o in response.outputs}
    np.testing.assert_allclose(list(outputs["probability"].contents.fp64_contents), expected[:3, 1], rtol=0, atol=1e-12)


def test_v2_requested_outputs_and_binary_data_extension(server, sample, expected):
    """Only the requested output comes back; binary tensors (kserve's extension) still decode."""
    from kserve.protocol.infer_type import InferRequest

    from tollgate.serving.client import column_inputs

    body = {**_v2_columns(sample, rows=3), "outputs": [{"name": "probability"}]}
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["probability"]

    inputs = column_inputs(_records(sample.head(3)), for_grpc=True)
    for tensor in inputs:
        if tensor.datatype in ("FP64", "INT64"):
            tensor.set_data_from_numpy(tensor.as_numpy(), binary_data=True)
    payload, json_length = InferRequest(model_name=MODEL, infer_inputs=inputs).to_rest()
    assert json_length is not None
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", content=payload,
                          headers={"content-type": "application/octet-stream",
                                   "inference-header-content-length": str(json_length)})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    np.testing.assert_allclose(outputs["probability"]["data"], expected[:3, 1], rtol=0, atol=1e-12)


def test_unseen_category_goes_to_the_model(server, sample, trained_model_dir):
    row = _records(sample.head(1))[0]
    row["region"] = "atlantis"
    response = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json={"instances": [row]})
    assert response.status_code == 200, response.text
    frame = sample.head(1).copy()
    frame["region"] = "atlantis"
    schema = json.loads((trained_model_dir / "input_schema.json").read_text())
    in_process = OnnxModel.from_file(trained_model_dir / "model.onnx", schema).predict_proba(frame)[0, 1]
    assert response.json()["predictions"][0]["probability"] == pytest.approx(in_process, abs=1e-12)


def test_metadata_lists_inputs_and_outputs(server, schema):
    response = httpx.get(f"{server.rest_url}/v2/models/{MODEL}")
    assert response.status_code == 200
    body = response.json()
    assert [i["name"] for i in body["inputs"]] == [c["name"] for c in schema["columns"]]
    datatypes = {"float64": "FP64", "int64": "INT64", "bool": "BOOL", "string": "BYTES"}
    assert [i["datatype"] for i in body["inputs"]] == [datatypes[c["dtype"]] for c in schema["columns"]]
    assert all(i["shape"] == [-1] for i in body["inputs"])
    assert {o["name"]: o["datatype"] for o in body["outputs"]} == {"predicted_class": "INT64", "probability": "FP64"}


def test_metrics_endpoint_stays_on(server, sample):
    predict("rest-v1", server.rest_url, MODEL, _records(sample.head(1)))
    response = httpx.get(f"{server.rest_url}/metrics")
    assert response.status_code == 200
    assert "request_predict_seconds" in response.text


# -- bad requests: each is a 4xx with a message, and the server stays healthy ---------------------


def _row(sample) -> dict:
    return _records(sample.head(1))[0]


def _with(sample, **changes) -> dict:
    row = _row(sample)
    row.update(changes)
    return {"instances": [row]}


def _without(sample, column: str) -> dict:
    row = _row(sample)
    del row[column]
    return {"instances": [row]}


def _v2_columns(sample, rows: int = 1, **overrides) -> dict:
    inputs = []
    for name, values in _records_by_column(sample.head(rows)).items():
        datatype = {np.dtype("int64"): "INT64", np.dtype("float64"): "FP64", np.dtype("bool"): "BOOL"}.get(
            sample[name].dtype, "BYTES")
        inputs.append({"name": name, "shape": [rows], "datatype": datatype, "data": values})
    for name, tensor in overrides.items():
        inputs = [t for t in inputs if t["name"] != name] + ([tensor] if tensor is not None else [])
    return {"inputs": inputs}


def _records_by_column(frame: pd.DataFrame) -> dict[str, list]:
    records = _records(frame)
    return {name: [r[name] for r in records] for name in frame.columns}


BAD_REST = [
    # (case id, path kind, body builder -> bytes|dict, expected status, words the message must contain)
    ("v1-malformed-json", "v1", lambda s: b'{"instances": [', 400, ["json"]),
    ("v1-malformed-json-no-content-type", "v1-raw", lambda s: b"{not json", 400, ["json"]),
    ("v1-body-not-an-object", "v1", lambda s: b"[1, 2, 3]", 400, ["object"]),
    ("v1-no-instances", "v1", lambda s: {"rows": []}, 400, ["instances"]),
    ("v1-instances-not-a-list", "v1", lambda s: {"instances": {"age": 3}}, 400, ["list"]),
    ("v1-empty-batch", "v1", lambda s: {"instances": []}, 400, ["empty"]),
    ("v1-missing-column", "v1", lambda s: _without(s, "age"), 400, ["missing", "age"]),
    ("v1-unknown-column", "v1", lambda s: _with(s, zodiac="leo"), 400, ["unknown", "zodiac"]),
    ("v1-text-for-number", "v1", lambda s: _with(s, annual_income="lots"), 400, ["annual_income", "lots"]),
    ("v1-fraction-for-integer", "v1", lambda s: _with(s, age=41.5), 400, ["age", "41.5"]),
    ("v1-bool-for-number", "v1", lambda s: _with(s, credit_history_months=True), 400, ["credit_history_months", "True"]),
    ("v1-null-in-required-column", "v1", lambda s: _with(s, age=None), 400, ["age", "not nullable"]),
    ("v1-number-for-category", "v1", lambda s: _with(s, region=7), 400, ["region", "7"]),
    ("v1-text-for-bool", "v1", lambda s: _with(s, has_mortgage="maybe"), 400, ["has_mortgage", "maybe"]),
    ("v1-row-too-short", "v1", lambda s: {"instances": [[1, 2, 3]]}, 400, ["3 values"]),
    ("v1-instance-not-row-or-object", "v1", lambda s: {"instances": [42]}, 400, ["instance"]),
    ("v1-nested-value", "v1", lambda s: _with(s, age=[40]), 400, ["age"]),
    ("v1-over-max-batch", "v1", lambda s: {"instances": [_row(s)] * (MAX_BATCH + 1)}, 400, ["limit", str(MAX_BATCH)]),
    ("v2-malformed-json", "v2", lambda s: b'{"inputs": [', 400, ["json"]),
    ("v2-no-inputs-field", "v2", lambda s: {"outputs": []}, 400, ["inputs"]),
    ("v2-data-not-a-list", "v2", lambda s: {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64",
                                                          "data": "old"}]}, 400, ["data"]),
    ("v2-empty-inputs", "v2", lambda s: {"inputs": []}, 400, ["empty"]),
    ("v2-missing-column", "v2", lambda s: _v2_columns(s, age=None), 400, ["missing", "age"]),
    ("v2-unknown-column", "v2", lambda s: _v2_columns(s, zodiac={"name": "zodiac", "shape": [1], "datatype": "BYTES",
                                                               "data": ["leo"]}), 400, ["unknown", "zodiac"]),
    ("v2-wrong-datatype", "v2", lambda s: _v2_columns(s, gender={"name": "gender", "shape": [1], "datatype": "FP64",
                                                                "data": [1.0]}), 400, ["gender", "FP64"]),
    ("v2-shape-does-not-match-data", "v2", lambda s: _v2_columns(s, age={"name": "age", "shape": [2], "datatype": "INT64",
                                                                        "data": [40]}), 400, ["age", "rows"]),
    ("v2-3d-column", "v2", lambda s: _v2_columns(s, age={"name": "age", "shape": [1, 1, 1], "datatype": "INT64",
                                                        "data": [40]}), 400, ["age", "shape"]),
    ("v2-unparsable-text-number", "v2", lambda s: _v2_columns(s, age={"name": "age", "shape": [1], "datatype": "BYTES",
                                                                     "data": ["forty"]}), 400, ["age", "forty"]),
    ("v2-matrix-wrong-width", "v2", lambda s: {"inputs": [{"name": "rows", "shape": [1, 3], "datatype": "BYTES",
                                                            "data": [["1", "2", "3"]]}]}, 400, ["shape", "[n, "]),
    ("v2-empty-batch", "v2", lambda s: _v2_columns(s, rows=0), 400, ["empty"]),
    ("v2-over-max-batch", "v2", lambda s: _v2_columns(s, rows=MAX_BATCH + 1), 400, ["limit"]),
    ("v2-binary-without-length-header", "v2-raw", lambda s: b"\x00\x01", 400, ["header"]),
    ("v2-input-not-an-object", "v2", lambda s: {"inputs": [42]}, 400, ["inputs.0"]),
    ("v2-shape-not-integers", "v2", lambda s: {"inputs": [{"name": "age", "shape": ["one"], "datatype": "INT64",
                                                             "data": [40]}]}, 400, ["shape"]),
    ("v2-unknown-output-requested", "v2", lambda s: {**_v2_columns(s), "outputs": [{"name": "nope"}]}, 400, ["nope"]),
    ("unknown-model", "v1-other", lambda s: {"instances": [_row(s)]}, 404, ["nope"]),
]


@pytest.fixture(scope="module")
def big_sample(schema) -> pd.DataFrame:
    names = [c["name"] for c in schema["columns"]]
    return generate_applicants(rows=MAX_BATCH + 1, seed=99)[names].reset_index(drop=True)


@pytest.mark.parametrize("case, kind, build, status, words", BAD_REST, ids=[c[0] for c in BAD_REST])
def test_bad_rest_request_is_a_4xx_and_server_stays_healthy(server, sample, big_sample, case, kind, build, status, words):
    body = build(big_sample if "over-max" in case else sample)
    path = {"v1": f"/v1/models/{MODEL}:predict", "v1-raw": f"/v1/models/{MODEL}:predict",
            "v1-other": "/v1/models/nope:predict", "v2": f"/v2/models/{MODEL}/infer",
            "v2-raw": f"/v2/models/{MODEL}/infer"}[kind]
    headers = {"content-type": "application/octet-stream" if kind == "v2-raw" else "application/json"}
    if kind == "v1-raw":
        headers = {"content-type": "text/plain"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(server.rest_url + path, content=content, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    message = response.json()["error"].lower()
    for word in words:
        assert word.lower() in message, message
    assert httpx.get(f"{server.rest_url}/v2/health/ready").status_code == 200
    assert server.alive()


def _grpc_request(sample, rows: int = 1, replace: dict | None = None, drop: tuple = ()):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    tensors = []
    for name, values in _records_by_column(sample.head(rows)).items():
        if name in drop:
            continue
        if replace and name in replace:
            tensors.append(replace[name])
            continue
        text = [("" if v is None else str(v)).encode() for v in values]
        tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[rows],
                                                             contents=pb.InferTensorContents(bytes_contents=text)))
    for name, tensor in (replace or {}).items():
        if name not in sample.columns:
            tensors.append(tensor)
    return pb.ModelInferRequest(model_name=MODEL, inputs=tensors)


def _tensor(name, datatype, shape, **contents):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    return pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape,
                                                 contents=pb.InferTensorContents(**contents))


BAD_GRPC = [
    ("missing-column", lambda s: _grpc_request(s, drop=("age",)), "age"),
    ("unknown-column", lambda s: _grpc_request(s, replace={"zodiac": _tensor("zodiac", "BYTES", [1], bytes_contents=[b"leo"])}), "zodiac"),
    ("unparsable-number", lambda s: _grpc_request(s, replace={"age": _tensor("age", "BYTES", [1], bytes_contents=[b"forty"])}), "forty"),
    ("fraction-for-integer", lambda s: _grpc_request(s, replace={"age": _tensor("age", "FP64", [1], fp64_contents=[41.5])}), "41.5"),
    ("wrong-datatype", lambda s: _grpc_request(s, replace={"gender": _tensor("gender", "FP64", [1], fp64_contents=[1.0])}), "gender"),
    ("shape-mismatch", lambda s: _grpc_request(s, replace={"age": _tensor("age", "INT64", [3], int64_contents=[40])}), "age"),
    ("empty-batch", lambda s: _grpc_request(s, rows=0), "empty"),
    ("over-max-batch", lambda s: _grpc_request(s, rows=MAX_BATCH + 1), "limit"),
    ("unknown-datatype", lambda s: _grpc_request(s, replace={"age": _tensor("age", "INT128", [1], int64_contents=[40])}), "input 'age' has an unknown datatype 'INT128'"),
    ("no-inputs", lambda s: _grpc_request(s, drop=tuple(s.columns)), "inputs"),
]


@pytest.mark.parametrize("case, build, word", BAD_GRPC, ids=[c[0] for c in BAD_GRPC])
def test_bad_grpc_request_is_invalid_argument(server, big_sample, case, build, word):
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    with grpc.insecure_channel(server.grpc_url) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            GRPCInferenceServiceStub(channel).ModelInfer(build(big_sample), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert word.lower() in caught.value.details().lower()
    assert server.alive()
