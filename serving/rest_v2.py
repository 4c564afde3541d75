"""The Open Inference Protocol v2 REST routes: Tollgate registers this table instead of kserve's.

kserve's ``register_v2_endpoints`` would add its model repository extension too
(``/v2/repository/models/<name>/load|unload``), which lets any client unload the model. The
health, server-metadata and model-list routes here answer as kserve's do (from kserve's data
plane); the others differ:

* **infer** (plain and versioned): kserve's own route parses every body into its pydantic
  ``InferenceRequest``, converts that to an ``InferRequest``, and validates the answer into
  a pydantic ``InferenceResponse`` before serialising it: about a third of a batch-1
  request here. This route decodes the JSON with orjson straight into kserve's
  ``InferRequest`` (checking the same fields, with messages that name them), runs kserve's
  data plane and model exactly as the stock route does, and writes kserve's ``to_rest``
  answer with orjson.
* **the binary tensor extension** (``inference-header-content-length``) is decoded here
  too: kserve's ``InferRequest.from_bytes`` answers a short length prefix, non-UTF-8 text
  or a negative shape with ``struct.error`` / ``InferenceError`` (500). Every byte is
  accounted for here: sizes are checked against the body, BYTES prefixes against the
  tensor, element counts against the shape; anything else is ``InvalidInput`` (400).
* **versions**: a Tollgate server serves one immutable version. ``?model_version=`` and
  ``/versions/<v>/...`` accept that version and answer 404 naming it for any other
  (kserve answers 501 for any version at all). The model metadata lists it in
  ``versions``.

``decode_raw_tensor`` is shared with the gRPC servicer (``raw_input_contents``).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from tollgate.serving.predlog import Entry, PredictionLog

# Longest piece of client input (a name, a header) echoed back in a message.
ECHO_LIMIT = 80

# Little-endian element types of the fixed-size OIP datatypes (binary extension and gRPC raw contents).
_FIXED_DTYPES = {
    "BOOL": np.dtype("?"), "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
DATATYPES = frozenset(_FIXED_DTYPES) | {"BYTES"}


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer serialised with orjson (FastAPI deprecates its ``ORJSONResponse``)."""
    # The options FastAPI's ORJSONResponse used: numpy values and non-string keys serialise.
    body = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return Response(content=body, status_code=status_code, headers=headers,
                    media_type="application/json")


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr`` of client input, cut to ``limit`` characters: messages never echo a payload back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class VersionNotFound(ModelNotFound):
    """A version other than the one this server serves (404 / NOT_FOUND)."""

    def __init__(self, model_name: str, requested: str, served: str):
        super().__init__(model_name)
        self.reason = (f"model '{model_name}' has no version {echo(requested)} here; "
                       f"this server serves version '{served}' only")


def served_version(dataplane: DataPlane, model_name: str) -> str:
    """The version the named model serves (``ModelNotFound`` for another name)."""
    model = dataplane.model_registry.get_model(model_name)
    if model is None:
        raise ModelNotFound(echo(model_name))
    return str(getattr(model, "version", "") or "")


def check_version(dataplane: DataPlane, model_name: str, requested: str | None) -> None:
    """Accept no version or the served one; anything else is :class:`VersionNotFound`."""
    served = served_version(dataplane, model_name)
    if requested and requested != served:
        raise VersionNotFound(model_name, requested, served)


def new_request_id() -> str:
    """An id for a request that came without one (returned as the answer's ``id``)."""
    return PredictionLog.new_request_id()


def output_data(response: Any) -> list[tuple[str, Any]] | None:
    """``(name, data)`` of each output tensor of a v2 answer, for the prediction log (references, no copies)."""
    outputs = getattr(response, "outputs", None)
    if outputs is None:
        return None
    return [(output.name, output.data) for output in outputs]


# -- decoding ---------------------------------------------------------------------------------


def _field(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise InvalidInput(f"invalid request body: {where}.{key}: field required")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidInput(f"invalid request body: {where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _parameters(value: Any, where: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidInput(f"invalid request body: {where}: expected an object")
    return value


def decode_raw_tensor(name: str, datatype: str, shape: list[int], raw: bytes) -> list[Any]:
    """Decode one tensor's raw bytes (binary extension or gRPC ``raw_input_contents``) to a flat list.

    BYTES elements are 4-byte little-endian lengths followed by UTF-8 text; the other
    datatypes are packed little-endian values. The element count must equal the shape's.
    """
    if any(type(d) is not int or d < 0 for d in shape):
        raise InvalidInput(f"input {echo(name)} has an invalid shape {echo(shape)}; dimensions are non-negative integers")
    expected = math.prod(shape)
    if datatype == "BYTES":
        values: list[Any] = []
        offset, size = 0, len(raw)
        while offset < size:
            if offset + 4 > size:
                raise InvalidInput(f"input {echo(name)}: BYTES element {len(values)} has a truncated 4-byte length "
                                   f"prefix ({size - offset} bytes left)")
            length = int.from_bytes(raw[offset:offset + 4], "little")
            offset += 4
            if offset + length > size:
                raise InvalidInput(f"input {echo(name)}: BYTES element {len(values)} declares {length} bytes but "
                                   f"only {size - offset} remain")
            try:
                values.append(raw[offset:offset + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"input {echo(name)}: BYTES element {len(values)} is not valid UTF-8 text") from None
            offset += length
            if len(values) > expected:
                break
    else:
        dtype = _FIXED_DTYPES.get(datatype)
        if dtype is None:
            raise InvalidInput(f"input {echo(name)} has an unknown datatype {echo(datatype)}; "
                               f"known: {', '.join(sorted(DATATYPES))}")
        if len(raw) % dtype.itemsize:
            raise InvalidInput(f"input {echo(name)}: {len(raw)} bytes is not a whole number of {datatype} "
                               f"values ({dtype.itemsize} bytes each)")
        if datatype == "BOOL" and raw.strip(b"\x00\x01"):
            raise InvalidInput(f"input {echo(name)}: BOOL values must be bytes 0 or 1")
        values = np.frombuffer(raw, dtype=dtype).tolist()
    if len(values) != expected:
        raise InvalidInput(f"input {echo(name)} declares shape {shape} ({expected} values) but carries "
                           f"{'more than ' if len(values) > expected else ''}{len(values)}")
    return values


def _decode_document(document: Any, model_name: str, binary: memoryview | None) -> InferRequest:
    """Build an ``InferRequest`` from a parsed v2 body; ``binary`` is the tail of a binary-extension request."""
    if not isinstance(document, dict):
        raise InvalidInput(f"invalid request body: expected a JSON object with 'inputs', got {type(document).__name__}")
    entries = _field(document, "inputs", list, "body")
    inputs = []
    offset = 0
    for index, entry in enumerate(entries):
        where = f"inputs.{index}"
        if not isinstance(entry, dict):
            raise InvalidInput(f"invalid request body: {where}: expected an object, got {type(entry).__name__}")
        name = _field(entry, "name", str, where)
        shape = _field(entry, "shape", list, where)
        if not all(type(d) is int for d in shape):
            raise InvalidInput(f"invalid request body: {where}.shape: expected a list of integers, got {echo(shape)}")
        datatype = _field(entry, "datatype", str, where)
        if datatype not in DATATYPES:
            raise InvalidInput(f"invalid request body: {where}.datatype: unknown datatype {echo(datatype)}; "
                               f"known: {', '.join(sorted(DATATYPES))}")
        parameters = _parameters(entry.get("parameters"), f"{where}.parameters") or {}
        if "data" in entry or binary is None:
            data = _field(entry, "data", list, where)
        else:
            size = parameters.get("binary_data_size")
            if type(size) is not int or size < 0:
                raise InvalidInput(f"invalid request body: {where}: give 'data' or parameters.binary_data_size "
                                   f"(a non-negative integer), got {echo(size)}")
            if offset + size > len(binary):
                raise InvalidInput(f"{where} ({echo(name)}): binary_data_size {size} runs past the end of the body "
                                   f"({len(binary) - offset} bytes left)")
            data = decode_raw_tensor(name, datatype, shape, bytes(binary[offset:offset + size]))
            offset += size
            parameters = {k: v for k, v in parameters.items() if k != "binary_data_size"}
        inputs.append(InferInput(name=name, shape=shape, datatype=datatype, data=data, parameters=parameters))
    if binary is not None and offset != len(binary):
        raise InvalidInput(f"the body carries {len(binary) - offset} bytes after the tensors its inputs declare")
    outputs = document.get("outputs")
    requested = None
    if outputs:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise InvalidInput("invalid request body: outputs: expected a list of objects with a 'name'")
        requested = []
        for index, output in enumerate(outputs):
            out_parameters = _parameters(output.get("parameters"), f"outputs.{index}.parameters") or {}
            if type(out_parameters.get("binary_data", False)) is not bool:
                raise InvalidInput(f"invalid request body: outputs.{index}.parameters.binary_data: expected a boolean")
            requested.append(RequestedOutput(name=output["name"], parameters=out_parameters))
    request_parameters = _parameters(document.get("parameters"), "parameters")
    if request_parameters and type(request_parameters.get("binary_data_output", False)) is not bool:
        raise InvalidInput("invalid request body: parameters.binary_data_output: expected a boolean")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"invalid request body: id: expected a string, got {type(request_id).__name__}")
    return InferRequest(model_name=model_name, infer_inputs=inputs, request_id=request_id,
                        parameters=request_parameters, request_outputs=requested)


def decode_json_request(body: bytes, model_name: str) -> InferRequest:
    """A v2 JSON body as kserve's ``InferRequest``; ``InvalidInput`` for anything malformed."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON ({exc})") from None
    return _decode_document(document, model_name, None)


def decode_binary_request(body: bytes, json_length: str, model_name: str) -> InferRequest:
    """A binary-extension body (JSON header of ``json_length`` bytes, then raw tensors)."""
    try:
        length = int(json_length)
    except ValueError:
        raise InvalidInput(f"header '{INFERENCE_CONTENT_LENGTH_HEADER}' must be an integer, "
                           f"got {echo(json_length)}") from None
    if not 0 <= length <= len(body):
        raise InvalidInput(f"header '{INFERENCE_CONTENT_LENGTH_HEADER}' is {length}, but the body has "
                           f"{len(body)} bytes")
    view = memoryview(body)
    try:
        document = orjson.loads(view[:length])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the JSON part of the binary request is not valid JSON ({exc})") from None
    return _decode_document(document, model_name, view[length:])


# -- routes -----------------------------------------------------------------------------------

# Set to "1" to put kserve's stock v2 infer route in place of Tollgate's (a conformance test compares them).
STOCK_ROUTE_ENV = "TOLLGATE_STOCK_V2_INFER"


# The OIP v2 inference request, for the OpenAPI document (the route reads the raw body itself).
_INFER_REQUEST_SCHEMA = {
    "type": "object", "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                           "datatype": {"type": "string"}, "parameters": {"type": "object"},
                           "data": {"type": "array"}}}},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}}}},
    },
}


def register_v2_routes(app: FastAPI, dataplane: DataPlane) -> None:
    """Add every v2 REST route Tollgate serves: health, server and model metadata, ready, infer.

    kserve's ``register_v2_endpoints`` also adds the model repository extension
    (``/v2/repository/models/<name>/load|unload``), which lets any client unload the model;
    Tollgate registers this table instead, so those routes do not exist.
    """

    async def server_metadata() -> Response:
        return json_response(dataplane.metadata())

    async def live() -> Response:
        return json_response({"live": (await dataplane.live())["status"] == "alive"})

    async def server_ready() -> Response:
        if not await dataplane.ready():
            raise ServerNotReady("the model cannot answer")
        return json_response({"ready": True})

    async def models() -> Response:
        return json_response({"models": list(dataplane.model_registry.get_models())})

    async def infer(request: Request) -> Response:
        log = getattr(dataplane, "prediction_log", None)
        if log is None:
            return await answer(request, None)
        started, arrived = time.perf_counter(), time.time()
        state: dict[str, Any] = {}
        try:
            result = await answer(request, state)
        except Exception as exc:
            if log.sampled():
                request_id = state.get("request_id") or log.new_request_id()
                log.record(Entry(arrived, request_id, "v2-rest", (time.perf_counter() - started) * 1000.0,
                                 type(exc).__name__, None, None))
            raise
        if log.sampled():
            log.record(Entry(arrived, state["request_id"], "v2-rest", (time.perf_counter() - started) * 1000.0,
                             None, state["inputs"], state["outputs"]))
        return result

    async def answer(request: Request, state: dict[str, Any] | None) -> Response:
        model_name = request.path_params["model_name"]
        check_version(dataplane, model_name,
                      request.path_params.get("model_version") or request.query_params.get("model_version"))
        if not await dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        body = await request.body()
        headers = dict(request.headers)
        json_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
        if json_length is not None:
            infer_request = decode_binary_request(body, json_length, model_name)
        elif headers.get("content-type", "").startswith("application/octet-stream"):
            raise InvalidInput(f"a binary (application/octet-stream) request needs the "
                               f"'{INFERENCE_CONTENT_LENGTH_HEADER}' header giving the length of its JSON part")
        else:
            infer_request = decode_json_request(body, model_name)
        if state is not None:
            # The prediction log needs an id to join late labels on: the client's, or one returned in the answer.
            if not infer_request.id:
                infer_request.id = new_request_id()
            state["request_id"] = infer_request.id
        response, response_headers = await dataplane.infer(model_name=model_name, request=infer_request,
                                                           headers=headers)
        if state is not None:
            state["inputs"] = infer_request.inputs
            state["outputs"] = output_data(response)
        response, encoded_headers = dataplane.encode(model_name=model_name, response=response, headers=headers,
                                                     req_attributes={})
        response_headers.update(encoded_headers)
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        if isinstance(response, bytes):
            return Response(content=response, headers=response_headers)
        return json_response(response, headers=response_headers)

    async def metadata(model_name: str, model_version: str | None = None) -> Response:
        check_version(dataplane, model_name, model_version)
        return json_response(await dataplane.model_metadata(model_name))

    async def ready(model_name: str, model_version: str | None = None) -> Response:
        check_version(dataplane, model_name, model_version)
        if not await dataplane.model_ready(model_name):
            raise ModelNotReady(model_name)
        return json_response({"name": model_name, "ready": True})

    async def documented_infer(request: Request, model_name: str, model_version: str | None = None) -> Response:
        return await infer(request)  # pragma: no cover - the plain route with the same path answers first

    infer_paths = ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer")
    if os.environ.get(STOCK_ROUTE_ENV) == "1":
        from kserve.protocol.rest.v2_endpoints import V2Endpoints

        stock = V2Endpoints(dataplane, None)
        for path in infer_paths:
            app.add_api_route(path, stock.infer, methods=["POST"], response_model=None, tags=["V2"])
    else:
        # Plain Starlette routes, matched before the documented ones below: FastAPI's per-request
        # parameter and dependency resolution is skipped (the app's exception handlers still apply).
        for path in infer_paths:
            app.add_route(path, infer, methods=["POST"], include_in_schema=False)
    body = {"requestBody": {"required": True, "content": {"application/json": {"schema": _INFER_REQUEST_SCHEMA}}}}
    for path, endpoint, method, extra in (
            ("/v2", server_metadata, "GET", None),
            ("/v2/health/live", live, "GET", None),
            ("/v2/health/ready", server_ready, "GET", None),
            ("/v2/models", models, "GET", None),
            ("/v2/models/{model_name}", metadata, "GET", None),
            ("/v2/models/{model_name}/versions/{model_version}", metadata, "GET", None),
            ("/v2/models/{model_name}/ready", ready, "GET", None),
            ("/v2/models/{model_name}/versions/{model_version}/ready", ready, "GET", None),
            (infer_paths[0], documented_infer, "POST", body),
            (infer_paths[1], documented_infer, "POST", body)):
        app.add_api_route(path, endpoint, methods=[method], response_model=None, tags=["V2"], openapi_extra=extra)
