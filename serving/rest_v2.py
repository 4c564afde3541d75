"""The Open Inference Protocol v2 REST infer route, without kserve's pydantic round trip.

kserve's own route parses every body into its pydantic ``InferenceRequest``, converts
that to an ``InferRequest``, and validates the answer into a pydantic
``InferenceResponse`` before serialising it: about a third of a batch-1 request here.
This route decodes the JSON with orjson straight into kserve's ``InferRequest`` (checking
the same fields, with messages that name them), runs kserve's data plane and model
exactly as the stock route does, and writes kserve's ``to_rest`` answer with orjson. The
binary-data extension (``inference-header-content-length``) still goes through kserve's
decoder. It is registered ahead of kserve's routes for the same paths, so it wins.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import ORJSONResponse
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER, PredictorProtocol
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput


def _field(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise InvalidInput(f"invalid request body: {where}.{key}: field required")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidInput(f"invalid request body: {where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def decode_json_request(body: bytes, model_name: str) -> InferRequest:
    """A v2 JSON body as kserve's ``InferRequest``; ``InvalidInput`` for anything malformed."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"invalid request body: expected a JSON object with 'inputs', got {type(document).__name__}")
    entries = _field(document, "inputs", list, "body")
    inputs = []
    for index, entry in enumerate(entries):
        where = f"inputs.{index}"
        if not isinstance(entry, dict):
            raise InvalidInput(f"invalid request body: {where}: expected an object, got {type(entry).__name__}")
        shape = _field(entry, "shape", list, where)
        if not all(type(d) is int for d in shape):
            raise InvalidInput(f"invalid request body: {where}.shape: expected a list of integers, got {shape!r}")
        parameters = entry.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidInput(f"invalid request body: {where}.parameters: expected an object")
        inputs.append(InferInput(name=_field(entry, "name", str, where), shape=shape,
                                 datatype=_field(entry, "datatype", str, where),
                                 data=_field(entry, "data", list, where), parameters=parameters or {}))
    outputs = document.get("outputs")
    requested = None
    if outputs:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise InvalidInput("invalid request body: outputs: expected a list of objects with a 'name'")
        requested = [RequestedOutput(name=o["name"], parameters=o.get("parameters") or {}) for o in outputs]
    request_id = document.get("id")
    parameters = document.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput("invalid request body: parameters: expected an object")
    return InferRequest(model_name=model_name, infer_inputs=inputs,
                        request_id=str(request_id) if request_id is not None else None,
                        parameters=parameters, request_outputs=requested)


def register_fast_v2_infer(app: FastAPI, dataplane: DataPlane) -> None:
    """Add the infer routes (plain and versioned) ahead of kserve's."""

    async def infer(request: Request, model_name: str, model_version: str | None = None) -> Response:
        if model_version:
            raise NotImplementedError("Model versioning not supported yet.")
        if not await dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        body = await request.body()
        headers = dict(request.headers)
        if INFERENCE_CONTENT_LENGTH_HEADER in headers:
            infer_request, _ = dataplane.decode(body, headers, protocol_version=PredictorProtocol.REST_V2.value,
                                                model_name=model_name)
        elif headers.get("content-type", "").startswith("application/octet-stream"):
            raise InvalidInput(f"a binary (application/octet-stream) request needs the "
                               f"'{INFERENCE_CONTENT_LENGTH_HEADER}' header giving the length of its JSON part")
        else:
            infer_request = decode_json_request(body, model_name)
        response, response_headers = await dataplane.infer(model_name=model_name, request=infer_request,
                                                           headers=headers)
        response, encoded_headers = dataplane.encode(model_name=model_name, response=response, headers=headers,
                                                     req_attributes={})
        response_headers.update(encoded_headers)
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        if isinstance(response, bytes):
            return Response(content=response, headers=response_headers)
        return ORJSONResponse(content=response, headers=response_headers)

    app.add_api_route("/v2/models/{model_name}/infer", infer, methods=["POST"], response_model=None,
                      include_in_schema=False)
    app.add_api_route("/v2/models/{model_name}/versions/{model_version}/infer", infer, methods=["POST"],
                      response_model=None, include_in_schema=False)
