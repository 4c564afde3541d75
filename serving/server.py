"""Run :class:`TollgateModel` under ``kserve.ModelServer`` (REST on one port, gRPC on another).

What this adds to the stock server, and why:

* **a client's mistake is never a 5xx.** kserve answers some malformed requests with a
  500 from inside its decoders (binary tensors, gRPC raw contents) and undecodable gRPC
  messages with UNKNOWN. Tollgate decodes v2 REST bodies itself (``serving/rest_v2.py``),
  decodes gRPC raw contents with the same code, gives gRPC a deserializer that turns
  undecodable bytes into INVALID_ARGUMENT, and maps every client error to 400 /
  INVALID_ARGUMENT with a message;
* **no client can take the model down.** kserve's model repository extension lets anyone
  who reaches the port unload the model (``POST /v2/repository/models/<name>/unload``,
  gRPC ``RepositoryModelUnload``). A Tollgate server serves one immutable version: those
  routes and RPCs do not exist (404 / UNIMPLEMENTED), and readiness (``/v2/health/ready``,
  gRPC ``ServerReady``) is true only while every registered model can answer;
* **bounded logs and answers.** kserve logs a full traceback for every 400 and echoes
  client input unbounded. Here a client's mistake is one short log line at most
  (rate-limited), and messages are cut to :data:`MESSAGE_LIMIT` characters;
* a bind address (the stock server always listens on every interface), a clear one-line
  error when a port is taken, and per-request logs (uvicorn access log, kserve's timing
  middleware, its per-call gRPC line) only with ``request_logging``.

One uvicorn worker (kserve's default): the model is loaded once, in this process.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from google.protobuf.message import DecodeError
from grpc_interceptor.exceptions import GrpcException
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
)
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.server import RESTServer, metrics_handler
from kserve.protocol.rest.v1_endpoints import V1Endpoints

from tollgate.errors import TollgateError
from tollgate.serving.model import TollgateModel
from tollgate.serving.predlog import Entry, PredictionLog
from tollgate.serving.predlog import from_config as prediction_log_from_config
from tollgate.serving.rest_v2 import (
    DATATYPES,
    check_version,
    decode_raw_tensor,
    echo,
    json_response,
    new_request_id,
    output_data,
    register_v2_routes,
    served_version,
)

logger = logging.getLogger("tollgate.serving")

# Longest error message a client gets back (REST body or gRPC details), and the longest one logged.
MESSAGE_LIMIT = 1000
LOG_MESSAGE_LIMIT = 200
GRPC_SERVICE = "inference.GRPCInferenceService"


class PortInUse(TollgateError):
    """A port the server needs is taken; the message names the flag that chooses another."""


class BodyTooLarge(Exception):
    """A request body over the server's limit (413; gRPC answers RESOURCE_EXHAUSTED by itself)."""

    def __init__(self, limit: int):
        super().__init__(f"the request body is over the limit of {limit} bytes; send fewer rows per request "
                         "(the limit follows serving.max_batch)")


def body_limit(max_batch: int, columns: int) -> int:
    """Largest request body (REST) and message (gRPC) accepted: room for ``max_batch`` rows of
    ``columns`` values at 256 bytes each, and never under 8 MiB (kserve's gRPC default)."""
    return max(8 * 2**20, max_batch * max(columns, 1) * 256)


class _BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused before it is read into memory.

    A declared ``content-length`` over the limit is answered at once; a chunked body is counted
    as it arrives and stops the request with :class:`BodyTooLarge` when it passes the limit.
    """

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    too_large = int(value) > self.limit
                except ValueError:
                    too_large = False
                if too_large:
                    message = str(BodyTooLarge(self.limit))
                    client_errors(logging.INFO, "client error 413", f"{scope.get('method')} {scope.get('path')}",
                                  message)
                    await json_response({"error": message}, status_code=413,
                                        headers={"connection": "close"})(scope, receive, send)
                    return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_line(text: str, limit: int) -> str:
    text = _cut(text, limit)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ClientErrorLog:
    """One short line per client mistake, at most ``per_second`` on average (bursts of ``burst``).

    Lines over the budget are counted, and the next line written says how many were dropped,
    so a flood of bad requests costs a bounded amount of log.
    """

    def __init__(self, per_second: float = 5.0, burst: int = 20, clock: Callable[[], float] = time.monotonic):
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._dropped = 0
        self._lock = threading.Lock()

    def __call__(self, level: int, kind: str, where: str, message: str, exc_info: BaseException | None = None) -> bool:
        """Log ``kind where: message`` if the budget allows; returns whether it was written."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            if self._tokens < 1:
                self._dropped += 1
                return False
            self._tokens -= 1
            dropped, self._dropped = self._dropped, 0
        suffix = f" ({dropped} more not logged)" if dropped else ""
        logger.log(level, "%s %s: %s%s", kind, _one_line(where, 120), _one_line(message, LOG_MESSAGE_LIMIT), suffix,
                   exc_info=exc_info)
        return True


client_errors = ClientErrorLog()


# -- the data plane ---------------------------------------------------------------------------


class _StrictDataPlane(DataPlane):
    """kserve's data plane, except: undecodable requests are the client's error, readiness means
    every model can answer, and model metadata lists the served version. ``prediction_log`` is
    the request layer's log (``serving/predlog.py``), None when monitoring is off."""

    prediction_log: PredictionLog | None = None

    def decode(self, body, headers, protocol_version: str = "v1", model_name: str | None = None):
        try:
            return super().decode(body, headers, protocol_version=protocol_version, model_name=model_name)
        except InvalidInput as exc:
            if str(exc).startswith("Unrecognized request format"):
                raise InvalidInput(f"the request body is not valid JSON ({str(exc).split(': ', 1)[-1]})") from None
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, InferenceError, UnicodeError) as exc:
            raise InvalidInput(f"malformed request body: {type(exc).__name__}: {_cut(str(exc), 200)}") from None

    def metadata(self) -> dict:
        # kserve advertises its model repository extension; Tollgate does not serve it.
        return {**super().metadata(), "extensions": []}

    async def ready(self) -> bool:
        models = self.model_registry.get_models()
        if not models:
            return False
        for name in list(models):
            if not await self.model_registry.is_model_ready(name):
                return False
        return True

    async def model_metadata(self, model_name: str) -> dict:
        metadata = await super().model_metadata(model_name)
        version = served_version(self, model_name)
        if version:
            metadata["versions"] = [version]
        # A multiclass model adds its task and class order (REST only: gRPC's TensorMetadata has no place).
        parameters = getattr(self.get_model_from_registry(model_name), "metadata_parameters", lambda: None)()
        if parameters:
            metadata["parameters"] = parameters
        return metadata


# -- REST -------------------------------------------------------------------------------------


def _error(status: int, message: str) -> Response:
    return json_response({"error": _cut(message, MESSAGE_LIMIT)}, status_code=status)


def _where(request: Request) -> str:
    return f"{request.method} {request.url.path}"


async def _client_error(request: Request, exc: Exception) -> Response:
    status = 404 if isinstance(exc, ModelNotFound) else 400
    message = str(exc)
    client_errors(logging.INFO, f"client error {status}", _where(request), message)
    return _error(status, message)


async def _invalid_body(request: Request, exc: RequestValidationError) -> Response:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        problems.append(f"{_cut(where, 80)}: {_cut(str(error.get('msg', 'invalid')), 120)}")
    message = "invalid request: " + "; ".join(problems)
    client_errors(logging.INFO, "client error 400", _where(request), message)
    return _error(400, message)


async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
    client_errors(logging.INFO, "client error 413", _where(request), str(exc))
    return _error(413, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    client_errors(logging.WARNING, "unavailable 503", _where(request), str(exc))
    return _error(503, str(exc))


async def _not_implemented(request: Request, exc: Exception) -> Response:
    client_errors(logging.INFO, "not implemented 501", _where(request), str(exc))
    return _error(501, str(exc))


async def _server_error(request: Request, exc: Exception) -> Response:
    # A real fault of the server: the traceback is worth having, but not once per request of a flood.
    client_errors(logging.ERROR, "server error 500", _where(request), f"{type(exc).__name__}: {exc}", exc_info=exc)
    return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


class _RESTServer(RESTServer):
    """kserve's REST server with Tollgate's v2 routes (``rest_v2``), no repository routes, bounded
    error handling, and its timing middleware only when request logs are wanted (that middleware
    exists to write a latency line per request and matches the route a second time to name it)."""

    def __init__(self, *args: Any, request_logging: bool = False, listen_socket: socket.socket | None = None,
                 max_body_bytes: int = 8 * 2**20, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._request_logging = request_logging
        self._socket = listen_socket
        self._max_body_bytes = max_body_bytes

    def _add_middlewares(self, app) -> None:
        if self._request_logging:
            super()._add_middlewares(app)
        app.add_middleware(_BodyLimit, limit=self._max_body_bytes)

    def _register_endpoints(self, app) -> None:
        # kserve's table minus the model repository extension (see ``register_v2_routes``), v1
        # ``:explain`` (a Tollgate model has no explainer: kserve answers 501) and the OpenAI /
        # time-series routes, which serve no Tollgate model.
        app.add_api_route("/", self.dataplane.live, methods=["GET"])
        app.add_api_route("/metrics", metrics_handler, methods=["GET"])
        v1 = V1Endpoints(self.dataplane, self.model_repository_extension)
        app.add_api_route("/v1/models", v1.models, methods=["GET"], tags=["V1"])
        app.add_api_route("/v1/models/{model_name}", v1.model_ready, methods=["GET"], tags=["V1"])
        predict = v1.predict if self.dataplane.prediction_log is None else _logged_v1(v1, self.dataplane.prediction_log)
        app.add_api_route("/v1/models/{model_name}:predict", predict, methods=["POST"], response_model=None,
                          tags=["V1"])
        register_v2_routes(app, self.dataplane)

    def _add_exception_handlers(self, app) -> None:
        app.add_exception_handler(RequestValidationError, _invalid_body)
        app.add_exception_handler(InvalidInput, _client_error)
        app.add_exception_handler(BodyTooLarge, _too_large)
        app.add_exception_handler(ModelNotFound, _client_error)
        app.add_exception_handler(ModelNotReady, _unavailable)
        app.add_exception_handler(ServerNotReady, _unavailable)
        app.add_exception_handler(ServerNotLive, _unavailable)
        app.add_exception_handler(NotImplementedError, _not_implemented)
        app.add_exception_handler(UnsupportedProtocol, _not_implemented)
        app.add_exception_handler(InferenceError, _server_error)
        app.add_exception_handler(Exception, _server_error)

    async def start(self) -> None:
        self.create_application()
        if self._socket is None:
            await self._server.serve()
            return
        # uvicorn announces itself only when it opens the socket; the same line, for whoever waits on it.
        host, port = self._socket.getsockname()[:2]
        logging.getLogger("uvicorn.error").info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)",
                                                f"[{host}]" if ":" in host else host, port)
        await self._server.serve(sockets=[self._socket])


REQUEST_ID_HEADER = "x-request-id"


def _logged_v1(v1: V1Endpoints, log: PredictionLog) -> Callable:
    """kserve's v1 predict with a prediction-log record per request (v1 has no body id: the
    ``x-request-id`` header is the id, generated when absent and returned in the same header)."""

    async def predict(model_name: str, request: Request) -> Any:
        started, arrived = time.perf_counter(), time.time()
        request_id = request.headers.get(REQUEST_ID_HEADER) or new_request_id()
        try:
            response = await v1.predict(model_name, request)
        except Exception as exc:
            if log.sampled():
                log.record(Entry(arrived, request_id, "v1-rest", (time.perf_counter() - started) * 1000.0,
                                 type(exc).__name__, None, None))
            raise
        response.headers[REQUEST_ID_HEADER] = request_id
        if log.sampled():
            log.record(Entry(arrived, request_id, "v1-rest", (time.perf_counter() - started) * 1000.0, None,
                             await request.body(), bytes(response.body)))
        return response

    return predict


# -- gRPC -------------------------------------------------------------------------------------


class _Undecodable:
    """Stands in for a request message whose bytes protobuf cannot parse."""

    __slots__ = ("kind", "error")

    def __init__(self, kind: str, error: Exception):
        self.kind = kind
        self.error = error


def _tolerant(message_class: Any) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            return _Undecodable(message_class.__name__, exc)

    return deserialize


class _StrictServicer(InferenceServicer):
    """kserve's servicer with version checks, decoded raw contents and the served version in metadata."""

    async def ModelReady(self, request, context):
        check_version(self._data_plane, request.name, request.version)
        return await super().ModelReady(request, context)

    async def ModelMetadata(self, request, context):
        check_version(self._data_plane, request.name, request.version)
        metadata = await self._data_plane.model_metadata(model_name=request.name)
        return pb.ModelMetadataResponse(name=metadata["name"], versions=metadata.get("versions", []),
                                        platform=metadata["platform"], inputs=metadata["inputs"],
                                        outputs=metadata["outputs"])

    async def ModelInfer(self, request, context):
        log = getattr(self._data_plane, "prediction_log", None)
        if log is None:
            return await self._infer(request, None)
        started, arrived = time.perf_counter(), time.time()
        state: dict[str, Any] = {}
        try:
            response = await self._infer(request, state)
        except Exception as exc:
            if log.sampled():
                log.record(Entry(arrived, state.get("request_id") or log.new_request_id(), "v2-grpc",
                                 (time.perf_counter() - started) * 1000.0, type(exc).__name__, None, None))
            raise
        if log.sampled():
            log.record(Entry(arrived, state["request_id"], "v2-grpc", (time.perf_counter() - started) * 1000.0,
                             None, state["inputs"], state["outputs"]))
        return response

    async def _infer(self, request, state: dict[str, Any] | None):
        if state is not None:
            # The prediction log joins late labels on this id: the client's, or one returned in the answer.
            if not request.id:
                request.id = new_request_id()
            state["request_id"] = request.id
        check_version(self._data_plane, request.model_name, request.model_version)
        self.validate_grpc_request(request)
        for tensor in request.inputs:
            # kserve's InferRequest.from_grpc refuses an unknown datatype with a bare "invalid content
            # type"; say which input and which datatype, as REST v2 does.
            if tensor.datatype not in DATATYPES:
                raise InvalidInput(f"input {echo(tensor.name)} has an unknown datatype {echo(tensor.datatype)}; "
                                   f"known: {', '.join(sorted(DATATYPES))}")
        raw = list(request.raw_input_contents)
        infer_request = InferRequest.from_grpc(request)
        # kserve decodes raw contents lazily inside the model, where a bad BYTES prefix is a
        # struct.error (INTERNAL); decode them here with the checks the REST binary path uses.
        for tensor, contents in zip(infer_request.inputs, raw, strict=False):
            data = decode_raw_tensor(tensor.name, tensor.datatype, list(tensor.shape), contents)
            tensor._raw_data = None
            tensor.data = data
        try:
            response, _ = await self._data_plane.infer(request=infer_request, headers=None,
                                                       model_name=request.model_name)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"malformed ModelInfer request: {type(exc).__name__}: {_cut(str(exc), 200)}") from None
        if state is not None:
            state["inputs"] = infer_request.inputs
            state["outputs"] = output_data(response)
        return response if isinstance(response, pb.ModelInferResponse) else response.to_grpc()


class _StatusInterceptor(ExceptionToStatusInterceptor):
    """Client errors become INVALID_ARGUMENT / NOT_FOUND with a bounded message and one short log line."""

    async def intercept(self, method, request_or_iterator, context, method_name):
        if isinstance(request_or_iterator, _Undecodable):
            bad = request_or_iterator

            async def refuse(_request, _context):
                raise InvalidInput(f"the {bad.kind} message cannot be decoded: {_cut(str(bad.error), 200)}")

            method = refuse
        return await super().intercept(method, request_or_iterator, context, method_name)

    async def handle_exception(self, ex, request_or_iterator, context, method_name):
        message = str(ex)
        if isinstance(ex, InvalidInput):
            code, level, kind = grpc.StatusCode.INVALID_ARGUMENT, logging.INFO, "client error INVALID_ARGUMENT"
        elif isinstance(ex, ModelNotFound):
            code, level, kind = grpc.StatusCode.NOT_FOUND, logging.INFO, "client error NOT_FOUND"
        elif isinstance(ex, (ModelNotReady, ServerNotReady, ServerNotLive)):
            code, level, kind = grpc.StatusCode.UNAVAILABLE, logging.WARNING, "unavailable"
        elif isinstance(ex, (NotImplementedError, UnsupportedProtocol)):
            code, level, kind = grpc.StatusCode.UNIMPLEMENTED, logging.INFO, "not implemented"
        elif isinstance(ex, GrpcException):
            await super().handle_exception(ex, request_or_iterator, context, method_name)
            return
        else:
            client_errors(logging.ERROR, "server error INTERNAL", method_name, f"{type(ex).__name__}: {ex}", exc_info=ex)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(ex).__name__}); "
                                                          "the server log has the details")
            return
        client_errors(level, kind, method_name, message)
        await context.abort(code, _cut(message, MESSAGE_LIMIT))


# (request class, response class) of every RPC Tollgate serves; the repository RPCs are left out.
_RPCS = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}


def add_servicer(servicer: InferenceServicer, server: Any) -> None:
    """Register ``servicer``'s RPCs (not the repository ones) with deserializers that never raise.

    The same table kserve's generated ``add_GRPCInferenceServiceServicer_to_server`` builds,
    through grpc's public handler API, with two differences: RepositoryModelLoad/Unload are
    absent (UNIMPLEMENTED), and undecodable bytes reach the interceptor as :class:`_Undecodable`
    (INVALID_ARGUMENT) instead of failing inside grpc (UNKNOWN).
    """
    handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name),
                                                           request_deserializer=_tolerant(request_class),
                                                           response_serializer=response_class.SerializeToString)
                for name, (request_class, response_class) in _RPCS.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(GRPC_SERVICE, handlers),))
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(GRPC_SERVICE, handlers)


class _BoundGRPCServer(GRPCServer):
    """kserve's gRPC server on a chosen host, with Tollgate's servicer, handler table and interceptor."""

    def __init__(self, *args: Any, host: str, request_logging: bool = False, max_message_bytes: int = 8 * 2**20,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._host = host
        self._request_logging = request_logging
        self._max_message_bytes = max_message_bytes

    async def start(self, max_workers: int) -> None:
        from grpc import aio
        from kserve.protocol.grpc.interceptors import LoggingInterceptor

        interceptors = ((LoggingInterceptor(),) if self._request_logging else ()) + (_StatusInterceptor(),)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=interceptors,
            options=[("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                     # The same limit as a REST body: RESOURCE_EXHAUSTED over it.
                     ("grpc.max_receive_message_length", self._max_message_bytes),
                     # Without this, a second server on the same port would silently share it.
                     ("grpc.so_reuseport", 0)],
        )
        add_servicer(_StrictServicer(self._data_plane, self._model_repository_extension), self._server)
        address = f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"
        if not self._server.add_insecure_port(address):
            raise PortInUse(f"port {self._port} is in use; choose another with --grpc-port")
        logger.info("gRPC listening on %s", address)
        await self._server.start()
        await self._server.wait_for_termination()


# -- the server -------------------------------------------------------------------------------


def bind_port(host: str, port: int, flag: str) -> socket.socket:
    """A listening socket on ``host:port`` (as uvicorn would open it), or :class:`PortInUse` naming ``flag``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this; uvicorn's own sockets get it from asyncio, whose
    # transports set it only on sockets they open themselves.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} is in use; choose another with {flag}") from None
        raise TollgateError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_ports_free(host: str, http_port: int, grpc_port: int | None) -> None:
    """:class:`PortInUse` (one line naming the flag) if either port is taken right now."""
    bind_port(host, http_port, "--http-port").close()
    if grpc_port is not None:
        bind_port(host, grpc_port, "--grpc-port").close()


class TollgateModelServer(ModelServer):
    """``kserve.ModelServer`` with a bind address, strict client-error handling and quiet request logs."""

    def __init__(self, host: str = "0.0.0.0", request_logging: bool = False,
                 http_socket: socket.socket | None = None, max_body_bytes: int = 8 * 2**20,
                 prediction_log: PredictionLog | None = None, **kwargs: Any):
        kwargs.setdefault("enable_latency_logging", request_logging)
        kwargs["workers"] = 1
        super().__init__(**kwargs)
        self.host = host
        self.request_logging = request_logging
        self.http_socket = http_socket
        self.max_body_bytes = max_body_bytes
        self.dataplane = _StrictDataPlane(model_registry=self.registered_models)
        self.dataplane.prediction_log = prediction_log

    def start(self, models: list[TollgateModel]) -> None:
        """Register the models, then serve REST (and gRPC) until SIGTERM/SIGINT."""
        self._register_and_check_atleast_one_model_is_ready(models)
        _log_like_kserve(logger)
        if not self.request_logging:
            logging.getLogger("kserve.trace").setLevel(logging.WARNING)
            # uvicorn writes access lines whenever its logger has a handler (kserve configures one);
            # no handler and no propagation is how uvicorn itself turns them off.
            access = logging.getLogger("uvicorn.access")
            access.handlers = []
            access.propagate = False
        self._rest_server = _RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                                        self.http_port, access_log_format=self.access_log_format, workers=1,
                                        grace_period=self.grace_period, event_loop=self.event_loop,
                                        timeout_keep_alive=self.timeout_keep_alive,
                                        request_logging=self.request_logging, listen_socket=self.http_socket,
                                        max_body_bytes=self.max_body_bytes)
        self._rest_server.config.host = self.host
        self._rest_server.config.access_log = self.request_logging
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = _BoundGRPCServer(self.grpc_port, self.dataplane, self.model_repository_extension,
                                                 kwargs=_grpc_options(), grace_period=self.grace_period,
                                                 host=self.host, request_logging=self.request_logging,
                                                 max_message_bytes=self.max_body_bytes)
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def _log_like_kserve(ours: logging.Logger) -> None:
    """Write Tollgate's serving lines (client errors, load) through kserve's configured handlers."""
    kserve_logger = logging.getLogger("kserve")
    if not ours.handlers and kserve_logger.handlers:
        ours.handlers = list(kserve_logger.handlers)
        ours.setLevel(logging.INFO)
        ours.propagate = False


def _grpc_options() -> dict[str, Any]:
    from kserve.model_server import args

    return vars(args)


def serve_model(model: TollgateModel, http_port: int = 8080, grpc_port: int = 8081, host: str = "0.0.0.0",
                enable_grpc: bool = True, request_logging: bool = False, monitoring: Any = None) -> None:
    """Load ``model`` and serve it until the process is told to stop.

    ``monitoring`` (a ``MonitoringConfig``) turns the prediction log on when its ``log_uri`` is
    set; what is queued is flushed when the server stops. Raises :class:`PortInUse` (before
    loading anything) when a port is taken.
    """
    import gc

    from threadpoolctl import threadpool_limits

    http_socket = bind_port(host, http_port, "--http-port")
    if enable_grpc:
        try:
            bind_port(host, grpc_port, "--grpc-port").close()
        except TollgateError:
            http_socket.close()
            raise
    model.load()
    # Requests run one at a time on the event loop; OpenMP/BLAS pools in the estimator
    # (HistGradientBoosting) only spin-wait on small batches and fight the loop for cores.
    # Limited after loading, so the libraries the model pulled in are loaded and covered.
    threadpool_limits(limits=1)
    # Everything loaded so far lives as long as the process: keep it out of the garbage
    # collector's full passes, which otherwise show up as latency spikes at p99.
    gc.collect()
    gc.freeze()
    limit = body_limit(getattr(model, "max_batch", 1024), len(model.get_input_types()))
    prediction_log = prediction_log_from_config(monitoring, model) if monitoring is not None else None
    server = TollgateModelServer(host=host, request_logging=request_logging, http_socket=http_socket,
                                 max_body_bytes=limit, prediction_log=prediction_log,
                                 http_port=http_port, grpc_port=grpc_port, enable_grpc=enable_grpc, grace_period=5)
    try:
        server.start([model])
    finally:
        if prediction_log is not None:
            prediction_log.close()
