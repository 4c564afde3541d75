"""Run :class:`TollgateModel` under ``kserve.ModelServer`` (REST on one port, gRPC on another).

What this adds to the stock server, and why:

* client mistakes never answer 500. kserve answers a body FastAPI cannot parse (bad
  JSON, wrong field types in a v2 request) with FastAPI's 422, and some malformed
  requests with a 500 from inside its decoders. We register a handler for FastAPI's
  ``RequestValidationError`` on the app kserve builds (``kserve.model_server.app``) and
  give the data plane a decoder that turns decoding errors into ``InvalidInput`` (400;
  INVALID_ARGUMENT on gRPC);
* the v2 infer route decodes JSON with orjson into kserve's ``InferRequest`` instead of
  a pydantic model round trip (``serving/rest_v2.py``);
* a bind address: the stock server always listens on every interface; local serving,
  tests and infra-validation listen on 127.0.0.1 only;
* per-request logging off by default (uvicorn access log, kserve's timing middleware
  and trace, its per-call gRPC log line): on two cores they cost a measurable share of
  a request.

One uvicorn worker (kserve's default): the model is loaded once, in this process.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent import futures
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import RESTServer

from tollgate.serving.model import TollgateModel
from tollgate.serving.rest_v2 import register_fast_v2_infer

logger = logging.getLogger("tollgate.serving")


class _StrictDataPlane(DataPlane):
    """kserve's data plane, except that a request it cannot decode is the client's error."""

    def decode(self, body, headers, protocol_version: str = "v1", model_name: str | None = None):
        try:
            return super().decode(body, headers, protocol_version=protocol_version, model_name=model_name)
        except InvalidInput as exc:
            if str(exc).startswith("Unrecognized request format"):
                raise InvalidInput(f"the request body is not valid JSON ({str(exc).split(': ', 1)[-1]})") from None
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise InvalidInput(f"malformed request body: {type(exc).__name__}: {exc}") from None


class _StrictServicer(InferenceServicer):
    """gRPC servicer whose request decoding errors become INVALID_ARGUMENT."""

    async def ModelInfer(self, request, context):
        try:
            return await super().ModelInfer(request, context)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"malformed ModelInfer request: {type(exc).__name__}: {exc}") from None


class _BoundGRPCServer(GRPCServer):
    """kserve's gRPC server, listening on a chosen host instead of every interface."""

    def __init__(self, *args: Any, host: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._host = host

    async def start(self, max_workers: int) -> None:
        from grpc import aio

        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                     ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length"))],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            _StrictServicer(self._data_plane, self._model_repository_extension), self._server)
        address = f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"
        if not self._server.add_insecure_port(address):
            raise OSError(f"gRPC cannot listen on {address}")
        logger.info("gRPC listening on %s", address)
        await self._server.start()
        await self._server.wait_for_termination()


class _RESTServer(RESTServer):
    """kserve's REST server with a faster v2 infer route (``rest_v2``); its timing middleware
    only when request logs are wanted.

    That middleware exists to write a latency log line per request, and it matches the
    route a second time to name it; with request logging off it is pure overhead.
    """

    def __init__(self, *args: Any, request_logging: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._request_logging = request_logging

    def _add_middlewares(self, app) -> None:
        if self._request_logging:
            super()._add_middlewares(app)

    def _register_endpoints(self, app) -> None:
        # First registered, first matched: our v2 infer route shadows kserve's for the same paths.
        register_fast_v2_infer(app, self.dataplane)
        super()._register_endpoints(app)


async def _invalid_body(_: Request, exc: RequestValidationError) -> ORJSONResponse:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return ORJSONResponse(status_code=400, content={"error": "invalid request body: " + "; ".join(problems)})


class _DropPerRequestLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("grpc method:")


class TollgateModelServer(ModelServer):
    """``kserve.ModelServer`` with a bind address, strict client-error handling and quiet request logs."""

    def __init__(self, host: str = "0.0.0.0", request_logging: bool = False, **kwargs: Any):
        kwargs.setdefault("enable_latency_logging", request_logging)
        kwargs["workers"] = 1
        super().__init__(**kwargs)
        self.host = host
        self.request_logging = request_logging
        self.dataplane = _StrictDataPlane(model_registry=self.registered_models)

    def start(self, models: list[TollgateModel]) -> None:
        """Register the models, then serve REST (and gRPC) until SIGTERM/SIGINT."""
        import kserve.model_server as kserve_server

        self._register_and_check_atleast_one_model_is_ready(models)
        kserve_server.app.add_exception_handler(RequestValidationError, _invalid_body)
        if not self.request_logging:
            logging.getLogger("kserve.trace").setLevel(logging.WARNING)
            logging.getLogger("kserve").addFilter(_DropPerRequestLines())
        self._rest_server = _RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                                        self.http_port, access_log_format=self.access_log_format, workers=1,
                                        grace_period=self.grace_period, event_loop=self.event_loop,
                                        timeout_keep_alive=self.timeout_keep_alive,
                                        request_logging=self.request_logging)
        self._rest_server.config.host = self.host
        self._rest_server.config.access_log = self.request_logging
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = _BoundGRPCServer(self.grpc_port, self.dataplane, self.model_repository_extension,
                                                 kwargs=_grpc_options(), grace_period=self.grace_period,
                                                 host=self.host)
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def _grpc_options() -> dict[str, Any]:
    from kserve.model_server import args

    return vars(args)


def serve_model(model: TollgateModel, http_port: int = 8080, grpc_port: int = 8081, host: str = "0.0.0.0",
                enable_grpc: bool = True, request_logging: bool = False) -> None:
    """Load ``model`` and serve it until the process is told to stop."""
    import gc

    from threadpoolctl import threadpool_limits

    model.load()
    # Requests run one at a time on the event loop; OpenMP/BLAS pools in the estimator
    # (HistGradientBoosting) only spin-wait on small batches and fight the loop for cores.
    # Limited after loading, so the libraries the model pulled in are loaded and covered.
    threadpool_limits(limits=1)
    # Everything loaded so far lives as long as the process: keep it out of the garbage
    # collector's full passes, which otherwise show up as latency spikes at p99.
    gc.collect()
    gc.freeze()
    server = TollgateModelServer(host=host, request_logging=request_logging, http_port=http_port,
                                 grpc_port=grpc_port, enable_grpc=enable_grpc, grace_period=5)
    server.start([model])
