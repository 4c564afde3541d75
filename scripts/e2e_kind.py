"""Checks for scripts/e2e-kind.sh, run on the host against the kind cluster (`make cluster-up`).

    e2e_kind.py production                  print the registry's production version
    e2e_kind.py answers --expect N          REST v1, REST v2 and gRPC through the NodePorts must answer
                                            with model_version N (several calls each: no old pod left)
    e2e_kind.py broken-deploy               register a copy of production whose model.onnx cannot
                                            load, deploy it with the deploy step exactly as the pipeline
                                            task does, and require a DeployError, restored aliases and
                                            an unchanged served version

Every check prints one line and exits 0 (pass) or 1 (fail). The registry is the cluster's MinIO
at localhost:30900 with the kind overlay's dev credentials; the model is the config's model_name.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_CREDENTIALS = REPO / "manifests" / "overlays" / "kind" / "dev-credentials.env"
S3_FROM_HOST = "http://localhost:30900"
REST_FROM_HOST = "http://localhost:30880"
GRPC_FROM_HOST = "localhost:30881"
CALLS_PER_PROTOCOL = 6


def _s3_environment() -> None:
    """The kind overlay's dev credentials, for the MinIO NodePort (never for anything else)."""
    for line in DEV_CREDENTIALS.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            os.environ.setdefault(key.strip(), value.strip())
    os.environ.setdefault("S3_ENDPOINT", S3_FROM_HOST)


def _registry_and_model():
    from tollgate.config import load_config
    from tollgate.registry import open_registry

    _s3_environment()
    config = load_config()
    return open_registry(config.kfp.registry_uri), config.model_name, config


def production() -> int:
    registry, model, _ = _registry_and_model()
    version = registry.alias_version(model, "production")
    if version is None:
        print(f"no production version of {model} in {registry.uri}", file=sys.stderr)
        return 1
    print(version)
    return 0


def _rows(registry, model: str, version: int) -> list[dict]:
    from tollgate.cluster.kserve import example_row
    from tollgate.registry.base import SCHEMA_FILE

    schema = registry.read_version_json(model, version, SCHEMA_FILE) or {}  # checked against the manifest
    return [example_row(schema)]


def answers(expect: int) -> int:
    from tollgate.serving.client import predict as send

    registry, model, _ = _registry_and_model()
    rows = _rows(registry, model, expect)
    seen: dict[str, set[str]] = {}
    for protocol, url in (("rest-v1", REST_FROM_HOST), ("rest-v2", REST_FROM_HOST), ("grpc", GRPC_FROM_HOST)):
        for _ in range(CALLS_PER_PROTOCOL):
            try:
                result = send(protocol, url, model, rows, timeout=30)
            except Exception as exc:  # the line says which protocol failed and why
                print(f"{protocol} at {url} failed: {exc}")
                return 1
            if len(result.probabilities) != len(rows):
                print(f"{protocol} at {url} answered {len(result.probabilities)} predictions for {len(rows)} rows")
                return 1
            seen.setdefault(protocol, set()).add(result.model_version)
    wrong = {protocol: sorted(versions) for protocol, versions in seen.items() if versions != {str(expect)}}
    if wrong:
        print(f"wanted model_version {expect} from every answer, got {wrong}")
        return 1
    print(f"REST v1, REST v2 and gRPC: {CALLS_PER_PROTOCOL} answers each, all from v{expect}")
    return 0


def broken_deploy(timeout: int, registry=None, model: str | None = None, check_answers=None, **cluster) -> int:
    """Register a copy of production that cannot load, deploy it, require the rollback.

    ``registry``, ``model``, ``check_answers(version) -> int`` and ``cluster`` (``api``,
    ``apps_api``, ``base_url`` for ``deploy_kserve``) default to the kind cluster seen from the
    host; tests pass their own.
    """
    from tollgate.cluster.kserve import DeployError, KServeSettings
    from tollgate.config import load_config
    from tollgate.registry.base import METADATA_FILE, ONNX_FILE
    from tollgate.steps.deploy import deploy_kserve

    if registry is None:
        registry, model, _ = _registry_and_model()
    model = model or load_config().model_name
    check_answers = check_answers or answers
    cluster.setdefault("base_url", lambda service: REST_FROM_HOST)  # from the host: the model NodePort
    before = registry.aliases(model)
    serving = before.get("production", {}).get("version")
    if serving is None:
        print("no production version to protect; run the first submit before this check")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        directory = registry.download(model, serving, Path(tmp) / "copy")
        (directory / METADATA_FILE).unlink(missing_ok=True)
        (directory / ONNX_FILE).write_bytes(b"this is not a graph: the model server cannot load it\n")
        broken = registry.register(model, directory, {"note": "deliberately broken by scripts/e2e_kind.py"}).version
    # As the pipeline's deploy task builds them (the prediction log included), without a canary.
    config = load_config()
    settings = KServeSettings.from_config(config.deploy.kserve, config.monitoring).model_copy(
        update={"ready_timeout_seconds": timeout, "canary_traffic_percent": None})
    try:
        deploy_kserve(registry, model, broken, settings, **cluster)
    except DeployError as exc:
        message = str(exc)
    else:
        print(f"v{broken} cannot load, yet the deploy step reported success")
        return 1
    if "restored the previous spec" not in message or f"production -> v{serving}" not in message:
        print(f"the deploy failed but did not restore: {message}")
        return 1
    after = registry.alias_version(model, "production")
    if after != serving:
        print(f"production is v{after} after the failed deploy, wanted v{serving}")
        return 1
    status = check_answers(serving)
    if status == 0:
        print(f"broken v{broken} was refused and rolled back; v{serving} still serves ({message[:160]}...)")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("production", help="print the production version")
    check = commands.add_parser("answers", help="every protocol answers with this model_version")
    check.add_argument("--expect", type=int, required=True, help="the model_version every answer must carry")
    broken = commands.add_parser("broken-deploy", help="a version that cannot load must be rolled back")
    broken.add_argument("--timeout", type=int, default=240, help="seconds the rollout may take before it is undone")
    options = parser.parse_args(argv)
    if options.command == "production":
        return production()
    if options.command == "answers":
        return answers(options.expect)
    return broken_deploy(options.timeout)


if __name__ == "__main__":
    sys.exit(main())
