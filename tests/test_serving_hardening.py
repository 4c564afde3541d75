"""What a hostile client can no longer do to the model server (issue 9), against a real process.

Binary-extension and gRPC decoding errors are 400 / INVALID_ARGUMENT; non-finite numbers are
refused naming the column; the model repository extension (load/unload) does not exist and
readiness follows the model; the served version is accepted and any other is a 404 naming it;
client mistakes cost one short, rate-limited log line and truncated echoes; the uvicorn access
log follows ``request_logging``; a taken port is one line.

kserve pieces Tollgate overrides (``RESTServer._register_endpoints`` / ``_add_exception_handlers``
/ ``_add_middlewares``, ``GRPCServer.start``'s handler table, ``InferInput._raw_data``) are pinned
by behaviour here: if kserve renamed one, the repository routes, tracebacks or raw-content
errors these tests look for would come back and the tests would fail.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
import subprocess
import sys
import time

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.test_serving_fuzz import in_process, json_records
from tollgate.data.builtin import generate_applicants
from tollgate.serving.process import ServerNotReady, ServerProcess

MODEL = "credit-default"
NUMERIC = "credit_score"  # float64 in the built-in data
INTEGER = "age"           # int64


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("hardening") / "server.log"
    with ServerProcess(trained_model_dir, MODEL, log_path=log) as process:
        process.wait_ready(timeout=60)
        yield process


@pytest.fixture(scope="module")
def metadata(server) -> dict:
    return httpx.get(f"{server.rest_url}/v2/models/{MODEL}").json()


@pytest.fixture(scope="module")
def version(trained_model_dir) -> str:
    return str(json.loads((trained_model_dir / "metadata.json").read_text())["version"])


@pytest.fixture(scope="module")
def rows(metadata) -> list[dict]:
    names = [i["name"] for i in metadata["inputs"]]
    return json_records(generate_applicants(rows=8, seed=808)[names])


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _v2_body(rows: list[dict], **override) -> dict:
    inputs = []
    for name in rows[0]:
        inputs.append(override.get(name) or {"name": name, "shape": [len(rows)], "datatype": "BYTES",
                                             "data": [_text(r[name]) for r in rows]})
    return {"inputs": inputs}


def _grpc_request(rows: list[dict], **override) -> pb.ModelInferRequest:
    tensors = []
    for name in rows[0]:
        tensors.append(override.get(name) or pb.ModelInferRequest.InferInputTensor(
            name=name, datatype="BYTES", shape=[len(rows)],
            contents=pb.InferTensorContents(bytes_contents=[_text(r[name]).encode() for r in rows])))
    return pb.ModelInferRequest(model_name=MODEL, inputs=tensors)


def _binary_request(rows: list[dict], victim: str, raw: bytes, datatype: str = "BYTES", shape=None):
    """A binary-extension body: every column as a BYTES tensor, ``victim`` replaced by ``raw``."""
    header, tails = [], []
    for name in rows[0]:
        if name == victim:
            data, tensor_type, tensor_shape = raw, datatype, shape or [len(rows)]
        else:
            data = b"".join(struct.pack("<I", len(v)) + v for v in (_text(r[name]).encode() for r in rows))
            tensor_type, tensor_shape = "BYTES", [len(rows)]
        header.append({"name": name, "shape": tensor_shape, "datatype": tensor_type,
                       "parameters": {"binary_data_size": len(data)}})
        tails.append(data)
    head = json.dumps({"inputs": header}).encode()
    return head + b"".join(tails), {"content-type": "application/octet-stream",
                                    "inference-header-content-length": str(len(head))}


def _grpc(server):
    return grpc.insecure_channel(server.grpc_url)


def _raw_call(channel, method: str):
    return channel.unary_unary(f"/inference.GRPCInferenceService/{method}", request_serializer=None,
                               response_deserializer=None)


# -- 1. the binary tensor extension ---------------------------------------------------------------


@pytest.mark.parametrize("case, raw, datatype, shape, words", [
    ("bytes-size-shorter-than-its-prefix", b"\x05\x00", "BYTES", None, ["region", "length prefix"]),
    ("bytes-prefix-longer-than-the-data", struct.pack("<I", 40) + b"north", "BYTES", None, ["region", "40 bytes"]),
    ("non-utf8-text", struct.pack("<I", 2) + b"\xff\xfe", "BYTES", [1], ["region", "utf-8"]),
    ("negative-shape", struct.pack("<I", 5) + b"north", "BYTES", [-1], ["region", "shape"]),
    ("fp64-size-not-a-multiple-of-8", b"\x00" * 7, "FP64", None, [NUMERIC, "7 bytes"]),
    ("fp64-count-does-not-match-shape", struct.pack("<2d", 1.0, 2.0), "FP64", [1], [NUMERIC, "shape"]),
])
def test_binary_extension_mistakes_are_400_and_keep_the_connection(server, rows, case, raw, datatype, shape, words):
    one = rows[:1]
    victim = "region" if "region" in words else NUMERIC
    payload, headers = _binary_request(one, victim, raw, datatype, shape)
    with httpx.Client(base_url=server.rest_url, timeout=10) as client:
        response = client.post(f"/v2/models/{MODEL}/infer", content=payload, headers=headers)
        assert response.status_code == 400, response.text
        message = response.json()["error"].lower()
        assert all(w.lower() in message for w in words), message
        assert response.headers.get("connection", "").lower() != "close"
        assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize("length, words", [("abc", "integer"), ("-1", "-1"), ("999999", "999999")])
def test_binary_extension_bad_length_header_is_400(server, rows, length, words):
    payload, headers = _binary_request(rows[:1], "region", struct.pack("<I", 5) + b"north")
    headers["inference-header-content-length"] = length
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", content=payload, headers=headers)
    assert response.status_code == 400 and words in response.json()["error"], response.text


def test_valid_binary_extension_request_equals_in_process(server, rows, trained_model_dir):
    """The decoder Tollgate owns still reads what kserve's client writes (FP64 / INT64 / BYTES tensors)."""
    from kserve.protocol.infer_type import InferRequest

    from tollgate.serving.client import column_inputs

    inputs = column_inputs(rows, for_grpc=True)
    for tensor in inputs:
        tensor.set_data_from_numpy(tensor.as_numpy() if tensor.datatype != "BYTES"
                                   else np.array([v.encode() if isinstance(v, str) else v for v in tensor.data],
                                                 dtype=object), binary_data=True)
    payload, json_length = InferRequest(model_name=MODEL, infer_inputs=inputs).to_rest()
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", content=payload,
                          headers={"content-type": "application/octet-stream",
                                   "inference-header-content-length": str(json_length)})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    np.testing.assert_allclose(outputs["probability"]["data"], in_process(trained_model_dir, rows), rtol=0, atol=1e-12)


# -- 2. gRPC ---------------------------------------------------------------------------------------


def test_grpc_bad_raw_contents_are_invalid_argument(server, rows):
    request = _grpc_request(rows[:1])
    raws = []
    for tensor in request.inputs:
        values = list(tensor.contents.bytes_contents)
        tensor.ClearField("contents")
        raws.append(b"".join(struct.pack("<I", len(v)) + v for v in values))
    raws[0] = b"\x09\x00"  # shorter than a 4-byte length prefix
    request.raw_input_contents.extend(raws)
    with _grpc(server) as channel, pytest.raises(grpc.RpcError) as caught:
        GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert "length prefix" in caught.value.details()


def _wrong_datatype(server, rows, datatype, contents) -> str:
    """The INVALID_ARGUMENT message for the integer column sent as ``datatype`` carrying ``contents``."""
    tensor = pb.ModelInferRequest.InferInputTensor(name=INTEGER, datatype=datatype, shape=[1],
                                                   contents=pb.InferTensorContents(**contents))
    with _grpc(server) as channel, pytest.raises(grpc.RpcError) as caught:
        GRPCInferenceServiceStub(channel).ModelInfer(_grpc_request(rows[:1], **{INTEGER: tensor}), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert server.alive()
    return caught.value.details()


UNKNOWN_DATATYPE = (f"input '{INTEGER}' has an unknown datatype 'INT128'; known: BOOL, BYTES, FP16, FP32, FP64, INT16, INT32, INT64, INT8, UINT16, UINT32, UINT64, UINT8")


@pytest.mark.parametrize("datatype, contents, message", [
    # FP16 travels only in raw contents; typed contents of another type are not read for it.
    ("FP16", {"fp32_contents": [1.0]}, f"input '{INTEGER}' declares 1 rows but carries 0 values"),
    ("BOOL", {"bool_contents": [True]}, f"input '{INTEGER}' has datatype BOOL; column '{INTEGER}' (int64) takes INT64"),
    # An unknown datatype that does carry a value (int64_contents): refused, not read as INT64.
    ("INT128", {"int64_contents": [40]}, UNKNOWN_DATATYPE),
    ("FP64", {"int64_contents": [40]}, f"input '{INTEGER}' declares 1 rows but carries 0 values"),
    ("BYTES", {"bytes_contents": [b"\xff"]}, f"input '{INTEGER}': value b'\\xff' is not valid UTF-8 text"),
])
def test_grpc_wrong_datatypes_are_invalid_argument(server, rows, datatype, contents, message):
    assert _wrong_datatype(server, rows, datatype, contents) == message
    # The same row with the column as INT64 is answered: only the datatype was wrong.
    good = pb.ModelInferRequest.InferInputTensor(name=INTEGER, datatype="INT64", shape=[1],
                                                 contents=pb.InferTensorContents(int64_contents=[40]))
    with _grpc(server) as channel:
        answer = GRPCInferenceServiceStub(channel).ModelInfer(_grpc_request(rows[:1], **{INTEGER: good}), timeout=10)
    assert [o.name for o in answer.outputs] == ["predicted_class", "probability"]


def _unknown_datatype_as_raw_contents(server, rows) -> str:
    """The message for the integer column sent as INT128 raw contents (8 bytes of 40, twice)."""
    request = pb.ModelInferRequest(model_name=MODEL)
    for name, value in rows[0].items():
        if name == INTEGER:
            request.inputs.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="INT128", shape=[1]))
            request.raw_input_contents.append(struct.pack("<q", 40) * 2)
        else:
            text = _text(value).encode()
            request.inputs.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[1]))
            request.raw_input_contents.append(struct.pack("<I", len(text)) + text)
    with _grpc(server) as channel, pytest.raises(grpc.RpcError) as caught:
        GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value.details()


@pytest.mark.parametrize("form", ["typed-contents", "raw-contents"])
def test_grpc_unknown_datatype_is_refused_naming_the_input_and_the_datatype(server, rows, form):
    # kserve's own refusal ("invalid content type") named neither; REST v2 answers with the same words.
    if form == "typed-contents":
        message = _wrong_datatype(server, rows, "INT128", {"int64_contents": [40]})
    else:
        message = _unknown_datatype_as_raw_contents(server, rows)
    assert message == UNKNOWN_DATATYPE
    assert server.alive()


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady"])
def test_grpc_undecodable_bytes_are_invalid_argument(server, method):
    with _grpc(server) as channel:
        for payload in (b"\xff\xff\xff\xff\x0f", b"\x0a\x05\xff\xfe\xfd\xfc\xfb", b"\x0a\x40short"):
            with pytest.raises(grpc.RpcError) as caught:
                _raw_call(channel, method)(payload, timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (payload, caught.value.details())
            assert "cannot be decoded" in caught.value.details()


# -- 3. non-finite numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["inf", "-Infinity", "1e400", "-1e999"])
@pytest.mark.parametrize("column", [NUMERIC, INTEGER])
def test_v2_json_non_finite_text_is_refused_naming_the_column(server, rows, text, column):
    body = _v2_body(rows[:1], **{column: {"name": column, "shape": [1], "datatype": "BYTES", "data": [text]}})
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert f"column '{column}'" in message and "finite" in message and text in message, message


def test_v1_non_finite_is_refused(server, rows):
    row = dict(rows[0])
    row[NUMERIC] = "inf"
    response = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json={"instances": [row]})
    assert response.status_code == 400 and NUMERIC in response.json()["error"], response.text
    raw = json.dumps({"instances": [rows[0]]}).replace(f'"{NUMERIC}": {json.dumps(rows[0][NUMERIC])}',
                                                       f'"{NUMERIC}": 1e400')
    response = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", content=raw,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_v2_binary_fp64_infinity_is_refused(server, rows, value):
    payload, headers = _binary_request(rows[:1], NUMERIC, struct.pack("<d", value), "FP64")
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", content=payload, headers=headers)
    assert response.status_code == 400 and f"column '{NUMERIC}'" in response.json()["error"], response.text


@pytest.mark.parametrize("datatype, field", [("FP64", "fp64_contents"), ("FP32", "fp32_contents")])
def test_grpc_infinity_is_invalid_argument_naming_the_column(server, rows, datatype, field):
    tensor = pb.ModelInferRequest.InferInputTensor(name=NUMERIC, datatype=datatype, shape=[1],
                                                   contents=pb.InferTensorContents(**{field: [math.inf]}))
    with _grpc(server) as channel, pytest.raises(grpc.RpcError) as caught:
        GRPCInferenceServiceStub(channel).ModelInfer(_grpc_request(rows[:1], **{NUMERIC: tensor}), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"column '{NUMERIC}'" in caught.value.details() and "finite" in caught.value.details()


# -- 4. nobody can take the model out of service -------------------------------------------------


def test_repository_routes_and_rpcs_do_not_exist(server, rows):
    for action in ("load", "unload"):
        response = httpx.post(f"{server.rest_url}/v2/repository/models/{MODEL}/{action}")
        assert response.status_code == 404, response.text
    paths = httpx.get(f"{server.rest_url}/openapi.json").json()["paths"]
    assert not [p for p in paths if "repository" in p or p.endswith(("/load", "/unload"))], list(paths)
    assert httpx.get(f"{server.rest_url}/v2").json()["extensions"] == []
    # No explainer either: kserve's v1 :explain answered 501.
    # (405: the path then only matches GET /v1/models/{model_name}.)
    assert httpx.post(f"{server.rest_url}/v1/models/{MODEL}:explain", json={"instances": []}).status_code == 405
    assert not [p for p in paths if p.endswith(":explain")]
    with _grpc(server) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for rpc, message in (("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name=MODEL)),
                             ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name=MODEL))):
            with pytest.raises(grpc.RpcError) as caught:
                getattr(stub, rpc)(message, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL), timeout=10).ready
        assert stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10).extensions == []
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json=_v2_body(rows[:2]))
    assert response.status_code == 200, response.text


def test_readiness_is_false_whenever_the_model_cannot_answer(trained_model_dir):
    """The data plane, REST routes and gRPC servicer the server runs, around a model that is not ready."""
    from fastapi import FastAPI
    from kserve.model_repository import ModelRepository

    from tollgate.serving.model import TollgateModel
    from tollgate.serving.rest_v2 import register_v2_routes
    from tollgate.serving.server import _RESTServer, _StrictDataPlane, _StrictServicer

    model = TollgateModel(MODEL, trained_model_dir)
    model.load()
    registry = ModelRepository()
    registry.update(model)
    dataplane = _StrictDataPlane(model_registry=registry)
    app = FastAPI()
    register_v2_routes(app, dataplane)
    _RESTServer._add_exception_handlers(None, app)
    servicer = _StrictServicer(dataplane, None)

    async def check() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as client:
            assert (await client.get("/v2/health/ready")).status_code == 200
            assert (await servicer.ServerReady(pb.ServerReadyRequest(), None)).ready
            model.ready = False
            assert (await client.get("/v2/health/ready")).status_code == 503
            assert (await client.get(f"/v2/models/{MODEL}/ready")).status_code == 503
            assert (await client.post(f"/v2/models/{MODEL}/infer", json={"inputs": []})).status_code == 503
            assert (await client.get("/v2/health/live")).status_code == 200
            assert not (await servicer.ServerReady(pb.ServerReadyRequest(), None)).ready
            registry.unload(MODEL)
            assert (await client.get("/v2/health/ready")).status_code == 503
            assert not await dataplane.ready()

    asyncio.run(check())


# -- 5. versions -----------------------------------------------------------------------------------


def test_metadata_lists_the_served_version(server, version, metadata):
    assert metadata["versions"] == [version]
    assert httpx.get(f"{server.rest_url}/v2/models/{MODEL}/versions/{version}").json()["versions"] == [version]
    assert httpx.get(f"{server.rest_url}/v2/models/{MODEL}/versions/{version}/ready").status_code == 200
    with _grpc(server) as channel:
        answer = GRPCInferenceServiceStub(channel).ModelMetadata(pb.ModelMetadataRequest(name=MODEL, version=version))
    assert list(answer.versions) == [version]


def test_the_served_version_is_accepted_in_both_forms(server, rows, version, trained_model_dir):
    expected = in_process(trained_model_dir, rows)
    for path in (f"/v2/models/{MODEL}/infer?model_version={version}", f"/v2/models/{MODEL}/versions/{version}/infer"):
        response = httpx.post(server.rest_url + path, json=_v2_body(rows))
        assert response.status_code == 200, (path, response.text)
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        np.testing.assert_allclose(outputs["probability"]["data"], expected, rtol=0, atol=1e-12)
    request = _grpc_request(rows)
    request.model_version = version
    with _grpc(server) as channel:
        answer = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    probability = next(o for o in answer.outputs if o.name == "probability")
    np.testing.assert_allclose(list(probability.contents.fp64_contents), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("other", ["999", "0", "latest", "v1"])
def test_another_version_is_404_naming_the_served_one(server, rows, version, other):
    for method, path in (("POST", f"/v2/models/{MODEL}/infer?model_version={other}"),
                         ("POST", f"/v2/models/{MODEL}/versions/{other}/infer"),
                         ("GET", f"/v2/models/{MODEL}/versions/{other}"),
                         ("GET", f"/v2/models/{MODEL}/versions/{other}/ready")):
        response = httpx.request(method, server.rest_url + path, json=_v2_body(rows[:1]))
        assert response.status_code == 404, (path, response.text)
        assert f"serves version '{version}'" in response.json()["error"]
    request = _grpc_request(rows[:1])
    request.model_version = other
    with _grpc(server) as channel, pytest.raises(grpc.RpcError) as caught:
        GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"serves version '{version}'" in caught.value.details()


# -- 6. logs and echoes ----------------------------------------------------------------------------


def test_a_huge_input_name_is_not_echoed_back(server, rows):
    name = "n" * 5_000_000
    body = _v2_body(rows[:1])
    body["inputs"].append({"name": name, "shape": [1], "datatype": "BYTES", "data": ["x"]})
    before = server.log_path.stat().st_size
    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert response.status_code == 400
    assert len(response.content) < 2_000
    with _grpc(server) as channel, pytest.raises(grpc.RpcError) as caught:
        tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[1],
                                                       contents=pb.InferTensorContents(bytes_contents=[b"x"]))
        request = _grpc_request(rows[:1])
        request.inputs.append(tensor)
        GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(caught.value.details()) < 2_000
    time.sleep(0.3)
    assert server.log_path.stat().st_size - before < 2_000


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    """REST 413 (declared length or chunked), gRPC RESOURCE_EXHAUSTED; the limit follows max_batch."""
    from tollgate.serving.server import body_limit

    limit = body_limit(1024, 24)
    assert limit == 8 * 2**20 and body_limit(100_000, 24) == 100_000 * 24 * 256
    url = f"{server.rest_url}/v2/models/{MODEL}/infer"
    big = b'{"inputs": [{"name": "' + b"x" * (limit + 1) + b'", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}'
    response = httpx.post(url, content=big, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413 and "limit" in response.json()["error"], response.text

    def chunks():
        for _ in range(limit // 2**20 + 2):
            yield b"x" * 2**20

    for path in (url, f"{server.rest_url}/v1/models/{MODEL}:predict"):
        response = httpx.post(path, content=chunks(), headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 413, (path, response.text)
    with _grpc(server) as channel, pytest.raises(grpc.RpcError) as caught:
        GRPCInferenceServiceStub(channel).ModelInfer(pb.ModelInferRequest(model_name=MODEL, id="x" * (limit + 1)),
                                                     timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert httpx.get(f"{server.rest_url}/v2/health/ready").status_code == 200


def test_a_flood_of_mistakes_costs_a_bounded_log_without_tracebacks(server):
    # The server process logs client mistakes through this module-level limiter, built with its defaults.
    from tollgate.serving.server import client_errors

    flood = 400
    before = server.log_path.stat().st_size
    started = time.monotonic()
    with httpx.Client(base_url=server.rest_url) as client:
        for _ in range(flood):
            assert client.post(f"/v2/models/{MODEL}/infer", content=b"{not json",
                               headers={"content-type": "application/json"}).status_code == 400
    time.sleep(0.3)
    elapsed = time.monotonic() - started
    grown = server.log_path.read_text(errors="replace")[before:]
    lines = grown.splitlines()
    # At most a full burst, plus what the rate refills while the flood (and the pause after it) lasted,
    # plus a few lines that are not client errors; a slow machine only raises the bound.
    bound = client_errors.burst + client_errors.per_second * elapsed + 3
    assert bound < flood, f"the flood took {elapsed:.1f}s: too slow to tell a limited log from one line per request"
    assert 1 <= len(lines) <= bound, (len(lines), round(bound, 1), f"{elapsed:.2f}s")
    assert all(len(line) < 500 for line in lines)
    assert "Traceback" not in grown
    assert "HTTP/1.1" not in grown, "request_logging is off: no uvicorn access lines"


def test_client_error_log_is_rate_limited_and_counts_what_it_drops(caplog):
    import logging

    from tollgate.serving.server import ClientErrorLog

    now = [0.0]
    log = ClientErrorLog(per_second=2.0, burst=3, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="tollgate.serving"):
        written = [log(logging.INFO, "client error 400", "POST /x", "bad\nline " + "y" * 1000) for _ in range(10)]
        assert written == [True] * 3 + [False] * 7
        now[0] += 1.0  # two tokens back
        assert log(logging.INFO, "client error 400", "POST /x", "again")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    assert "\n" not in messages[0] and len(messages[0]) < 400
    assert messages[-1].endswith("(7 more not logged)")


def test_request_logging_turns_the_access_log_on(trained_model_dir, tmp_path, rows):
    with ServerProcess(trained_model_dir, MODEL, log_path=tmp_path / "server.log",
                       extra_args=["--request-logging", "--no-grpc"]) as process:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{process.rest_url}/v2/models/{MODEL}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.post(f"{process.rest_url}/v2/models/{MODEL}/infer", json=_v2_body(rows[:1])).status_code == 200
        time.sleep(0.3)
        assert "POST /v2/models/credit-default/infer HTTP/1.1\" 200" in (tmp_path / "server.log").read_text()


# -- 7. ports --------------------------------------------------------------------------------------


def test_a_taken_port_is_one_line_naming_the_flag(trained_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for flag, args in (("--http-port", ["--http-port", str(port)]),
                           ("--grpc-port", ["--http-port", "0", "--grpc-port", str(port)])):
            result = subprocess.run([sys.executable, "-m", "tollgate.serving", "--model-dir", str(trained_model_dir),
                                     "--host", "127.0.0.1", *args], capture_output=True, text=True, timeout=60)
            assert result.returncode == 1
            assert result.stderr.strip() == f"error: port {port} is in use; choose another with {flag}", result.stderr


def test_a_port_taken_between_picking_and_binding_it_starts_the_server_again_on_fresh_ports(
        trained_model_dir, monkeypatch, tmp_path):
    """ServerProcess picks free ports, then the child binds them: another process (a parallel test, a
    second infra-validation) may take one in between. The child then refuses in one line and the
    server is started again on fresh ports; only when every attempt loses is that an error."""
    from tollgate.serving import process as process_module

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        real = process_module.free_port
        picks = iter([port, real()])  # the first server's REST port is the taken one
        monkeypatch.setattr(process_module, "free_port", lambda host="127.0.0.1": next(picks, None) or real())
        with ServerProcess(trained_model_dir, MODEL, log_path=tmp_path / "retry.log") as server:
            server.wait_ready(90)
            assert server.http_port != port and server._port_attempts == 2
            assert httpx.get(f"{server.rest_url}/v2/models/{MODEL}/ready").status_code == 200
        log = (tmp_path / "retry.log").read_text()
        assert f"port {port} is in use" in log and "starting again on" in log

        monkeypatch.setattr(process_module, "free_port", lambda host="127.0.0.1": port)  # every pick is taken
        with ServerProcess(trained_model_dir, MODEL) as server, pytest.raises(ServerNotReady) as refused:
            server.wait_ready(90)
        assert server._port_attempts == process_module.PORT_ATTEMPTS
        assert f"error: port {port} is in use; choose another with --http-port" in str(refused.value)


def test_the_rest_socket_keeps_tcp_nodelay():
    """Accepted connections inherit it; without it every keep-alive answer waits ~40 ms for a delayed ACK."""
    from tollgate.serving.server import bind_port

    sock = bind_port("127.0.0.1", 0, "--http-port")
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()


def test_raw_contents_live_where_the_servicer_decodes_them(rows):
    """Pins kserve's private ``InferInput._raw_data``: the servicer replaces it with decoded data."""
    from kserve.protocol.infer_type import InferRequest

    request = _grpc_request(rows[:1])
    tensor = request.inputs[0]
    tensor.ClearField("contents")
    request.raw_input_contents.append(struct.pack("<I", 3) + b"abc")
    del request.inputs[1:]
    decoded = InferRequest.from_grpc(request)
    assert decoded.inputs[0]._raw_data == struct.pack("<I", 3) + b"abc"


def test_kserve_still_calls_the_hooks_tollgate_overrides():
    """Pins kserve's ``RESTServer.create_application``: it must call ``_add_middlewares``,
    ``_register_endpoints`` and ``_add_exception_handlers``, which Tollgate overrides to drop the
    repository routes, bound bodies and answer client errors without tracebacks."""
    import kserve.model_server as kserve_server
    from kserve.errors import InvalidInput
    from kserve.model_repository import ModelRepository

    from tollgate.serving.server import _BodyLimit, _client_error, _RESTServer, _StrictDataPlane

    rest = _RESTServer("kserve.model_server:app", _StrictDataPlane(model_registry=ModelRepository()), None, 0)
    rest.create_application()
    app = kserve_server.app
    paths = {getattr(route, "path", "") for route in app.routes}
    assert {"/v2/models/{model_name}/infer", "/v2/health/ready", "/v1/models/{model_name}:predict"} <= paths
    assert not [p for p in paths if "repository" in p or "explain" in p], paths
    assert app.exception_handlers[InvalidInput] is _client_error
    assert any(m.cls is _BodyLimit for m in app.user_middleware)
