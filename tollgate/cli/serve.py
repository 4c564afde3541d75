"""``tollgate serve`` and ``tollgate predict``: run the model server locally and call it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from tollgate.cli.common import (
    ConfigOption,
    JsonOption,
    ModelNameOption,
    RegistryOption,
    console,
    emit_json,
    guarded,
    load,
)
from tollgate.errors import TollgateError


@guarded
def serve(
    alias: str | None = typer.Option(None, "--alias", help="Serve the version behind this alias (production, previous). "
                                        "Default: production."),
    version: int | None = typer.Option(None, "--version", help="Serve this version number instead of an alias."),
    model_dir: str | None = typer.Option(None, "--model-dir", help="Serve a version directory or "
                                            "s3://bucket/prefix/<model>/v<N> directly, bypassing aliases."),
    http_port: int | None = typer.Option(None, "--http-port", help="REST port. Default: serving.http_port (8080)."),
    grpc_port: int | None = typer.Option(None, "--grpc-port", help="gRPC port. Default: serving.grpc_port (8081)."),
    host: str | None = typer.Option(None, "--host", help="Bind address. Default: serving.host (127.0.0.1)."),
    log_uri: str | None = typer.Option(None, "--log-uri", help="Write the prediction log to this directory or "
                                          "s3://bucket/prefix. Default: monitoring.log_uri (off)."),
    config: Path | None = ConfigOption,
    registry: str | None = RegistryOption,
    model_name: str | None = ModelNameOption,
) -> None:
    """Serve a registered model version over REST (v1, v2) and gRPC (v2) until Ctrl+C."""
    from tollgate.serving.model import TollgateModel
    from tollgate.serving.server import check_ports_free, serve_model
    from tollgate.serving.source import fetch_registered, fetch_version_uri

    if alias is not None and version is not None:
        raise TollgateError("give either --alias or --version, not both")
    cfg = load(config, registry__uri=registry, model_name=model_name, serving__http_port=http_port,
               serving__grpc_port=grpc_port, serving__host=host, monitoring__log_uri=log_uri)
    settings = cfg.serving
    if model_dir is not None:
        directory, label = fetch_version_uri(model_dir), model_dir
    else:
        ref = version if version is not None else (alias or "production")
        directory, number = fetch_registered(cfg.registry.uri, cfg.model_name, ref)
        label = f"v{number}" + (f" ({alias or 'production'})" if version is None else "")
    check_ports_free(settings.host, settings.http_port, settings.grpc_port)
    model = TollgateModel(cfg.model_name, directory, max_batch=settings.max_batch,
                          unknown_columns=settings.unknown_columns)
    name, host = escape(cfg.model_name), escape(settings.host)
    console.print(f"Serving [bold]{name}[/] {escape(label)} from {escape(str(directory))}\n"
                  f"  REST v1  POST http://{host}:{settings.http_port}/v1/models/{name}:predict\n"
                  f"  REST v2  POST http://{host}:{settings.http_port}/v2/models/{name}/infer\n"
                  f"  gRPC v2  {host}:{settings.grpc_port} (inference.GRPCInferenceService/ModelInfer)\n"
                  f"  metrics  GET  http://{host}:{settings.http_port}/metrics\n"
                  + (f"  log      {escape(cfg.monitoring.log_uri)}\n" if cfg.monitoring.log_uri else "")
                  + "Ctrl+C stops it.", highlight=False)
    serve_model(model, http_port=settings.http_port, grpc_port=settings.grpc_port, host=settings.host,
                request_logging=settings.request_logging, monitoring=cfg.monitoring)


@guarded
def predict(
    file: Path = typer.Option(..., "--file", "-f", help="Rows to score: JSON (list of objects) or CSV with a header."),
    protocol: str = typer.Option("rest-v2", "--protocol", "-p", help="rest-v1, rest-v2 or grpc."),
    url: str | None = typer.Option(None, "--url", help="Server address: http://host:port for REST, host:port for "
                                      "gRPC. Default: 127.0.0.1 with serving.http_port / serving.grpc_port."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the answer."),
    config: Path | None = ConfigOption,
    model_name: str | None = ModelNameOption,
    as_json: bool = JsonOption,
) -> None:
    """Score rows with a running model server (kserve's REST or gRPC client) and print the predictions."""
    from tollgate.serving.client import PROTOCOLS, fetch_input_types, read_rows
    from tollgate.serving.client import predict as send

    if protocol not in PROTOCOLS:
        raise TollgateError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    cfg = load(config, model_name=model_name)
    if url is None:
        url = (f"127.0.0.1:{cfg.serving.grpc_port}" if protocol == "grpc"
               else f"http://127.0.0.1:{cfg.serving.http_port}")
    # A CSV file holds only text: type its columns as the model itself declares them.
    input_types = fetch_input_types(protocol, url, cfg.model_name, timeout) if file.suffix.lower() == ".csv" else None
    rows = read_rows(file, input_types)
    answer = send(protocol, url, cfg.model_name, rows, timeout=timeout)
    multiclass = answer.class_probabilities is not None
    if as_json:
        # Multiclass: "probability" is the predicted class's; binary answers keep their shape.
        emit_json({"model_name": answer.model_name, "model_version": answer.model_version, "protocol": protocol,
                   "predictions": [{"predicted_class": c, "probability": p}
                                   for c, p in zip(answer.classes, answer.probabilities, strict=True)]})
        return
    table = Table(title=escape(f"{answer.model_name} v{answer.model_version} via {protocol}"), header_style="bold",
                  show_edge=False)
    for column in ("row", "predicted_class", "probability of that class" if multiclass else "probability"):
        table.add_column(column, justify="right")
    for index, (label, probability) in enumerate(zip(answer.classes, answer.probabilities, strict=True)):
        table.add_row(str(index), escape(str(label)), f"{probability:.4f}")
    console.print(table)
