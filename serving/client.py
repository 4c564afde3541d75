"""Call a Tollgate model server with kserve's own clients (``InferenceRESTClient``, ``InferenceGRPCClient``).

Used by ``tollgate predict``, by infra-validation and by the tests, so all three speak
to the server exactly as a client application would.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

from tollgate.errors import TollgateError
from tollgate.serving.model import CLASS_OUTPUT, PROBABILITIES_OUTPUT, PROBABILITY_OUTPUT

PROTOCOLS = ("rest-v1", "rest-v2", "grpc")


@dataclass
class Predictions:
    """What the server answered for a batch of rows."""

    model_name: str
    model_version: str
    classes: list[Any]
    # Binary: the positive class's probability. Multiclass: the predicted class's probability.
    probabilities: list[float]
    # Multiclass only: every class's probability per row ([n, k]) and, when the answer names it, the class order.
    class_probabilities: list[list[float]] | None = None
    class_order: list[Any] | None = None


def read_rows(path: str | Path, input_types: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Rows from a JSON file (a list of objects, or ``{"instances": [...]}``) or a CSV file with a header.

    A CSV file holds only text, so its values are typed by ``input_types`` (column -> OIP
    datatype, from the model's own metadata, see :func:`fetch_input_types`): ``FP64`` and
    ``INT64`` columns become numbers, ``BOOL`` columns booleans, ``BYTES`` columns stay text;
    an empty cell is missing. Columns the model does not list, or a value that does not parse,
    stay text for the server to judge. Without ``input_types`` pandas guesses the types.
    JSON values are typed by whoever wrote the file and are sent as they are.
    """
    path = Path(path)
    if not path.is_file():
        raise TollgateError(f"rows file not found: {path}")
    if path.suffix.lower() == ".csv":
        import pandas as pd

        if input_types is None:
            frame = pd.read_csv(path)
            return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return [{k: _typed(v, input_types.get(k)) for k, v in row.items()} for row in frame.to_dict("records")]
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise TollgateError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise TollgateError(f"{path} must hold a list of objects (column -> value), or {{\"instances\": [...]}}")
    return data


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _typed(text: str, datatype: str | None) -> Any:
    """One CSV cell as the Python value the model's input datatype calls for."""
    if text == "":
        return None
    if datatype in ("FP16", "FP32", "FP64"):
        try:
            return float(text)
        except ValueError:
            return text
    if datatype in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"):
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return text
            return int(number) if number.is_integer() else number
    if datatype == "BOOL":
        lowered = text.strip().lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else text
    return text


def fetch_input_types(protocol: str, url: str, model_name: str, timeout: float = 10.0) -> dict[str, str] | None:
    """Column -> OIP datatype from the server's model metadata (``GET /v2/models/<name>`` or gRPC
    ``ModelMetadata``); ``None`` when the server does not describe its inputs."""
    import grpc
    import httpx

    try:
        if protocol == "grpc":
            from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
            from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

            with grpc.insecure_channel(url.split("://", 1)[-1].rstrip("/")) as channel:
                answer = GRPCInferenceServiceStub(channel).ModelMetadata(pb.ModelMetadataRequest(name=model_name),
                                                                        timeout=timeout)
            inputs = [{"name": i.name, "datatype": i.datatype} for i in answer.inputs]
        else:
            response = httpx.get(f"{url.rstrip('/')}/v2/models/{model_name}", timeout=timeout)
            if response.status_code == 404:
                raise TollgateError(f"the server at {url} has no model {model_name!r}: {_server_error(response)}")
            if response.status_code != 200:
                return None
            inputs = response.json().get("inputs") or []
    except httpx.HTTPError as exc:
        raise TollgateError(f"cannot reach the model server at {url}: {type(exc).__name__}: {exc}") from None
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise TollgateError(f"the server at {url} has no model {model_name!r}: {exc.details()}") from None
        raise TollgateError(f"cannot read the model's metadata at {url}: {exc.code().name}: {exc.details()}") from None
    types = {i["name"]: i["datatype"] for i in inputs if isinstance(i, dict) and "name" in i and "datatype" in i}
    return types or None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def column_inputs(rows: Sequence[dict[str, Any]], for_grpc: bool) -> list[InferInput]:
    """One v2 input per column, typed from the values (gRPC cannot carry nulls, so those go as text)."""
    if not rows:
        raise TollgateError("no rows to send")
    inputs = []
    for name in rows[0]:
        values = [row.get(name) for row in rows]
        present = [v for v in values if v is not None]
        has_null = len(present) != len(values)
        if present and all(type(v) is bool for v in present) and not (has_null and for_grpc):
            datatype, data = "BOOL", values
        elif present and all(type(v) in (int, float) for v in present):
            if all(type(v) is int for v in present) and not has_null:
                datatype, data = "INT64", values
            else:
                datatype, data = "FP64", [math.nan if v is None else float(v) for v in values]
                if not for_grpc:
                    data = [None if v is None else float(v) for v in values]
        else:
            datatype = "BYTES"
            data = ["" if v is None else (("true" if v else "false") if type(v) is bool else str(v)) for v in values]
        inputs.append(InferInput(name=name, shape=[len(rows)], datatype=datatype, data=data))
    return inputs


def _from_infer_response(response: InferResponse) -> Predictions:
    outputs = {o.name: o for o in response.outputs}
    if PROBABILITIES_OUTPUT in outputs and CLASS_OUTPUT in outputs:
        return _multiclass_from_infer_response(response, outputs)
    missing = [n for n in (CLASS_OUTPUT, PROBABILITY_OUTPUT) if n not in outputs]
    if missing:
        raise TollgateError(f"the server's answer lacks output(s) {missing}; is this a Tollgate model server?")
    classes = outputs[CLASS_OUTPUT].as_numpy().tolist()
    classes = [c.decode() if isinstance(c, bytes) else c for c in classes]
    version = response.model_version or (response.parameters or {}).get("model_version", "")
    return Predictions(response.model_name, str(version), classes,
                       [float(p) for p in outputs[PROBABILITY_OUTPUT].as_numpy().tolist()])


def _multiclass_from_infer_response(response: InferResponse, outputs: dict[str, Any]) -> Predictions:
    classes = [c.decode() if isinstance(c, bytes) else c for c in outputs[CLASS_OUTPUT].as_numpy().tolist()]
    tensor = outputs[PROBABILITIES_OUTPUT]
    matrix = tensor.as_numpy().astype(float)
    order = (tensor.parameters or {}).get("classes")
    order = getattr(order, "string_param", order)  # gRPC: an InferParameter; REST: the text itself
    order = json.loads(order) if isinstance(order, str) and order else None
    version = response.model_version or (response.parameters or {}).get("model_version", "")
    return Predictions(response.model_name, str(version), classes, [float(row.max()) for row in matrix],
                       class_probabilities=matrix.tolist(), class_order=order)


def _from_v1_answer(answer: dict[str, Any], model_name: str) -> Predictions:
    predictions = answer.get("predictions") or []
    name, version = answer.get("model_name", model_name), str(answer.get("model_version", ""))
    if predictions and PROBABILITIES_OUTPUT in predictions[0]:
        order = list(predictions[0][PROBABILITIES_OUTPUT])
        matrix = [[float(p[PROBABILITIES_OUTPUT][k]) for k in order] for p in predictions]
        classes = [p[CLASS_OUTPUT] for p in predictions]
        return Predictions(name, version, classes,
                           [float(p[PROBABILITIES_OUTPUT][str(c)]) for p, c in zip(predictions, classes, strict=True)],
                           class_probabilities=matrix, class_order=order)
    return Predictions(name, version, [p[CLASS_OUTPUT] for p in predictions],
                       [float(p[PROBABILITY_OUTPUT]) for p in predictions])


async def _predict(protocol: str, url: str, model_name: str, rows: Sequence[dict[str, Any]],
                   timeout: float) -> Predictions:
    if protocol == "rest-v1":
        client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=timeout, retries=0))
        try:
            answer = await client.infer(url, data={"instances": list(rows)}, model_name=model_name)
        finally:
            await client.close()
        return _from_v1_answer(answer, model_name)
    if protocol == "rest-v2":
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=timeout, retries=0))
        request = InferRequest(model_name=model_name, infer_inputs=column_inputs(rows, for_grpc=False))
        try:
            return _from_infer_response(await client.infer(url, data=request, model_name=model_name))
        finally:
            await client.close()
    if protocol == "grpc":
        target = url.split("://", 1)[-1].rstrip("/")
        client = InferenceGRPCClient(target, timeout=timeout, retries=1, channel_args=[("grpc.enable_retries", 0)])
        request = InferRequest(model_name=model_name, infer_inputs=column_inputs(rows, for_grpc=True))
        try:
            return _from_infer_response(await client.infer(request))
        finally:
            await client.close()
    raise TollgateError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def predict(protocol: str, url: str, model_name: str, rows: Sequence[dict[str, Any]],
            timeout: float = 30.0) -> Predictions:
    """Send ``rows`` to the server at ``url`` and return its predictions.

    ``url`` is ``http://host:port`` for the REST protocols and ``host:port`` for gRPC.
    A refused request raises :class:`TollgateError` carrying the server's message.
    """
    import logging

    import grpc
    import httpx

    # kserve's clients log a full traceback before raising; the raised error is reported below, once.
    kserve_logger = logging.getLogger("kserve")
    saved_level = kserve_logger.level
    kserve_logger.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_predict(protocol, url, model_name, rows, timeout))
    except httpx.HTTPStatusError as exc:
        raise TollgateError(f"{protocol} request refused: {exc.response.status_code} {_server_error(exc.response)}") from None
    except httpx.HTTPError as exc:
        raise TollgateError(f"{protocol} request to {url} failed: {type(exc).__name__}: {exc}") from None
    except grpc.RpcError as exc:
        raise TollgateError(f"grpc request to {url} failed: {exc.code().name}: {exc.details()}") from None
    finally:
        kserve_logger.setLevel(saved_level)


def _server_error(response: Any) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text
