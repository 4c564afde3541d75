"""Shared fixtures: small real configs, real kfp.local runs, an S3-compatible test server."""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tollgate.config import TollgateConfig, load_config

# A grid small enough for tests but with both model families, so selection is real.
SMALL_CANDIDATES = [
    {"name": "logreg", "family": "logistic_regression", "params": {"max_iter": 500}, "grid": {"C": [0.3, 1.0]}},
    {"name": "hgb", "family": "hist_gradient_boosting", "params": {"max_iter": 40}, "grid": {"learning_rate": [0.1]}},
]


def make_config(tmp_path: Path, **overrides: Any) -> TollgateConfig:
    """A config whose registry and runs live under ``tmp_path``, on 3,000 generated rows.

    3,000 rather than fewer: the small grid's test metrics then clear the default gate (ROC AUC
    0.70, PR AUC 0.40) on any split, 0.74-0.79 and 0.46-0.55 over eight split seeds; on 1,500
    rows they range over 0.66-0.75 and 0.35-0.49, and a test would pass or fail with the split.
    """
    values = {
        "registry.uri": str(tmp_path / "registry"),
        "run.root": str(tmp_path / "runs"),
        "data.builtin.rows": 3000,
        "train.candidates": SMALL_CANDIDATES,
    }
    values.update(overrides)
    return load_config(None, values)


@pytest.fixture
def config_factory(tmp_path):
    """Build small configs rooted in this test's tmp_path: ``config_factory(**{"data.target": "x"})``."""
    return lambda **overrides: make_config(tmp_path, **overrides)


def run_pipeline(config: TollgateConfig, **arguments: Any):
    """Run the real DAG with kfp.local; returns (outcome, summary)."""
    from tollgate.local_run import execute_pipeline, new_run_dir
    from tollgate.registry import open_registry
    from tollgate.summary import build_summary

    registry = open_registry(config.registry.uri)
    args = {"data_source": config.data.source, "registry_uri": registry.uri, "model_name": config.model_name,
            "scheduled_time": ""}
    args.update(arguments)
    outcome = execute_pipeline(config, args, new_run_dir(config.run.root))
    # The summary's JSON form: what `tollgate run --json` prints and the tests read.
    return outcome, build_summary(outcome, registry, config.model_name).to_dict()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3-compatible test server on 127.0.0.1, with credentials in the environment.

    Yields the endpoint URL. This is not MinIO; it speaks the same S3 API the minio SDK uses.
    """
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the S3-compatible test server did not start within 30 s")
    saved = {k: os.environ.get(k) for k in ("S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.update({"S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"})
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the S3-compatible test server; yields its name."""
    import uuid

    from tollgate.s3 import client_from_env

    name = f"test-{uuid.uuid4().hex[:12]}"
    client_from_env().make_bucket(name)
    return name


def _train_default(root: Path) -> dict[str, Any]:
    import builtins

    original_print = builtins.print
    config = make_config(root)
    outcome, summary = run_pipeline(config)
    assert outcome.succeeded, outcome.error
    from tollgate.registry import open_registry

    version = open_registry(config.registry.uri).resolve(config.model_name, "production")
    # kfp.local swaps builtins.print from its task threads; the runner must put it back (test_local_run).
    return {"summary": summary, "version_dir": str(version.uri), "print_restored": builtins.print is original_print,
            "resident_bytes": outcome.resident_bytes,
            "loaded_files_left": (outcome.run_dir / "loaded-files").exists()}


@pytest.fixture(scope="session")
def trained_run_record(tmp_path_factory) -> dict[str, Any]:
    """One real pipeline run of the default (binary) config, in this process unless another xdist
    worker ran it: ``summary``, ``version_dir`` (the registered version) and ``print_restored``.

    Under pytest-xdist each worker has its own session; the first worker to ask runs the pipeline
    and the others wait for it (an flock) and share its registry, so `make test` trains it once."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _train_default(tmp_path_factory.mktemp("trained"))
    shared = tmp_path_factory.getbasetemp().parent / "trained-shared"  # this session's, not another's
    with open(f"{shared}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = shared / "trained_run.json"
        if not result.exists():
            result.parent.mkdir(parents=True, exist_ok=True)
            result.write_text(json.dumps(_train_default(shared), default=str))
        return json.loads(result.read_text())


@pytest.fixture(scope="session")
def trained_run(trained_run_record) -> tuple[dict[str, Any], Path]:
    """The default run's summary and its registered version directory (model.onnx, model.joblib,
    input_schema.json, metadata.json). Shared by many tests (and xdist workers): read, never write there."""
    return trained_run_record["summary"], Path(trained_run_record["version_dir"])


@pytest.fixture(scope="session")
def trained_model_dir(trained_run) -> Path:
    """The registered version directory of :func:`trained_run`; shared by the serving, report and CLI tests."""
    return trained_run[1]


def written_with(path) -> str:
    """Which compression wrote ``path``: the size of the same table rewritten each way tells."""
    import pyarrow.feather as feather

    table = feather.read_table(str(path))
    sizes = {}
    for codec in ("uncompressed", "lz4"):
        probe = path.with_name(f"{path.name}.{codec}")
        feather.write_feather(table, str(probe), compression=codec)
        sizes[probe.stat().st_size] = codec
    return sizes[path.stat().st_size]


def evaluation_record(candidate: dict[str, Any], champion: dict[str, Any] | None = None):
    """An :class:`~tollgate.records.Evaluation` from ``evaluate_model``'s result (or a few fields a test
    names), the identity fields a test does not care about filled in, built as evaluate builds it."""
    from tollgate.records import CandidateEvaluation, ChampionEvaluation, Evaluation, field_values

    identity = {"candidate_id": "candidate", "family": "logistic_regression", "params": {}, "validation_metrics": {},
                "selection_metric": "roc_auc", "metrics": {}, "rows": 0}
    return Evaluation(candidate=CandidateEvaluation(**field_values(CandidateEvaluation, {**identity, **candidate})),
                      champion=ChampionEvaluation(**field_values(ChampionEvaluation, champion)) if champion else None)


# The checkout these tests run from.
ROOT_DIR = Path(__file__).resolve().parents[1]


def project_files() -> list[str]:
    """The project's files as a fresh clone has them, relative to the checkout: never a stale
    ``build/``, ``*.egg-info`` or cache. From git when this is a checkout; otherwise (a source
    archive) every file outside what .gitignore and the tools' caches name."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT_DIR,
                            capture_output=True, check=False)
    if listed.returncode == 0:
        return [name for name in listed.stdout.decode().split("\0")
                if name and ((ROOT_DIR / name).exists() or (ROOT_DIR / name).is_symlink())]  # not deleted, uncommitted
    ignored = [line.strip().rstrip("/") for line in (ROOT_DIR / ".gitignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")] + [".git", ".mypy_cache", ".ruff_cache", "dist"]
    files = []
    for folder, dirs, names in os.walk(ROOT_DIR):  # symlinked folders are listed, not walked
        here = Path(folder).relative_to(ROOT_DIR)
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(str(here / d), p) or fnmatch.fnmatch(d, p)
                                              for p in ignored) and not (Path(folder) / d).is_symlink()]
        files += [str(here / n) for n in names if not any(fnmatch.fnmatch(n, p) for p in ignored)]
        files += [str(here / d) for d in os.listdir(folder) if (Path(folder) / d).is_symlink()]
    return [name.removeprefix("./") for name in files]
