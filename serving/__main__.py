"""``python -m tollgate.serving``: the model server's entry point (serving image, infra-validation).

    python -m tollgate.serving --model-dir /mnt/models --model-name credit-default \\
        [--http-port 8080] [--grpc-port 8081] [--host 0.0.0.0] [--max-batch 1024] \\
        [--unknown-columns reject|ignore] [--no-grpc] [--request-logging] \\
        [--log-uri DIR|s3://bucket/prefix] [--log-sample-rate 1.0] [--log-flush-records N] [--log-flush-seconds T]

``--model-dir`` is a version directory (KServe's storage-initializer puts it at
``/mnt/models``) or an ``s3://bucket[/prefix]/<model>/v<N>`` URI fetched through the
registry. ``--model-name`` defaults to the name recorded in the version's metadata.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tollgate.config import MonitoringConfig, ServingConfig
from tollgate.errors import TollgateError
from tollgate.metrics import UNKNOWN_COLUMN_POLICIES
from tollgate.registry import METADATA_FILE
from tollgate.serving import import_kserve_with_bare_argv
from tollgate.serving.source import KSERVE_MODEL_DIR, fetch_version_uri

# The modules that import kserve (model, server) are imported in main(), after import_kserve_with_bare_argv().


def _default(section: type[ServingConfig] | type[MonitoringConfig], name: str):
    """A setting's default: the flags mirror the ``serving`` and ``monitoring`` sections, defined once there."""
    return section.model_fields[name].default


def build_parser() -> argparse.ArgumentParser:
    """Flags of the server entry point."""
    parser = argparse.ArgumentParser(prog="python -m tollgate.serving",
                                     description="Serve one Tollgate model version with KServe (REST v1/v2, gRPC v2).")
    parser.add_argument("--model-dir", default=KSERVE_MODEL_DIR,
                        help="Version directory or s3://bucket[/prefix]/<model>/v<N> (default: %(default)s).")
    parser.add_argument("--model-name", default=None,
                        help="Name in the URL paths; default: model_name from metadata.json, else 'model'.")
    parser.add_argument("--http-port", type=int, default=_default(ServingConfig, "http_port"),
                        help="REST port (default: %(default)s; 0: a free one).")
    parser.add_argument("--grpc-port", type=int, default=_default(ServingConfig, "grpc_port"),
                        help="gRPC port (default: %(default)s; 0: a free one).")
    parser.add_argument("--host", default="0.0.0.0", help="Bind address (default: %(default)s; 127.0.0.1 for local only).")
    parser.add_argument("--max-batch", type=int, default=_default(ServingConfig, "max_batch"),
                        help="Largest accepted batch; bigger requests get a 400 (default: %(default)s).")
    parser.add_argument("--unknown-columns", choices=UNKNOWN_COLUMN_POLICIES,
                        default=_default(ServingConfig, "unknown_columns"),
                        help="Columns the model does not know: 400 (reject) or dropped (ignore).")
    parser.add_argument("--no-grpc", action="store_true", help="Serve REST only.")
    parser.add_argument("--request-logging", action="store_true",
                        help="Log every request (uvicorn access log, kserve latency lines).")
    parser.add_argument("--log-uri", default=None,
                        help="Write the prediction log (Parquet) to this directory or s3://bucket/prefix "
                             "(default: no log).")
    parser.add_argument("--log-sample-rate", type=float, default=_default(MonitoringConfig, "sample_rate"),
                        help="Share of requests logged (default: %(default)s).")
    parser.add_argument("--log-flush-records", type=int, default=_default(MonitoringConfig, "flush_records"),
                        help="Write a log file after this many requests (default: %(default)s).")
    parser.add_argument("--log-flush-seconds", type=float, default=_default(MonitoringConfig, "flush_seconds"),
                        help="... or after this many seconds (default: %(default)s).")
    parser.add_argument("--log-queue-size", type=int, default=_default(MonitoringConfig, "queue_size"),
                        help="Requests held in memory before new ones are dropped and counted (default: %(default)s).")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse flags, fetch the version, serve until SIGTERM."""
    import_kserve_with_bare_argv()  # kserve must not read this process's flags (see tollgate.serving)
    from tollgate.serving.model import ModelLoadError, TollgateModel
    from tollgate.serving.server import serve_model

    options = build_parser().parse_args(argv)
    try:  # the flags are checked by the config section they mirror: one set of bounds (ports aside: 0 here
        # asks the system for a free one, which serving.*_port cannot mean)
        ServingConfig(max_batch=options.max_batch, unknown_columns=options.unknown_columns)
    except ValueError as exc:
        print(f"error: {_first_problem(exc, '--')}", file=sys.stderr)
        return 2
    try:
        monitoring = MonitoringConfig(log_uri=options.log_uri or None, sample_rate=options.log_sample_rate,
                                      flush_records=options.log_flush_records,
                                      flush_seconds=options.log_flush_seconds, queue_size=options.log_queue_size)
    except ValueError as exc:
        print(f"error: {_first_problem(exc, '--log-')}", file=sys.stderr)
        return 2
    try:
        model_dir = fetch_version_uri(options.model_dir)
        name = options.model_name or _recorded_name(model_dir) or "model"
        model = TollgateModel(name, model_dir, max_batch=options.max_batch, unknown_columns=options.unknown_columns)
        serve_model(model, http_port=options.http_port, grpc_port=options.grpc_port, host=options.host,
                    enable_grpc=not options.no_grpc, request_logging=options.request_logging, monitoring=monitoring)
    except (TollgateError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _first_problem(exc: ValueError, prefix: str) -> str:
    """pydantic's message as one line naming the flag (``prefix`` + the field, dashed) and what is wrong."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        field = str(error["loc"][0]).removeprefix("log_").replace("_", "-") if error["loc"] else ""
        return f"{prefix}{field}: {error['msg']}"
    return str(exc).splitlines()[-1].strip()


def _recorded_name(model_dir: Path) -> str | None:
    from tollgate.records import VersionMetadata

    path = Path(model_dir) / METADATA_FILE
    if path.is_file():
        try:
            return VersionMetadata.from_json(path.read_text()).model_name
        except (ValueError, TypeError):  # the model's own load reports an unreadable metadata.json
            return None
    return None


if __name__ == "__main__":
    sys.exit(main())
