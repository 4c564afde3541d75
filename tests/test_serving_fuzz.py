"""Fuzz a real model server process: malformed REST and gRPC requests never get a 5xx or
INTERNAL/UNKNOWN, schemathesis finds no server error in the OpenAPI document, and afterwards the
server is healthy and answers exactly as the model does in-process.

A bounded, seeded sample (a few thousand cases); ``bench/fuzz.py`` runs the full count.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fuzz_requests import (
    GRPC_CLASSES,
    REST_CLASSES,
    Baseline,
    Tally,
    generate_grpc,
    generate_rest,
    send_grpc,
    send_rest,
)
from tollgate.data.builtin import generate_applicants
from tollgate.serving.client import predict
from tollgate.serving.process import ServerProcess

MODEL = "credit-default"
MAX_BATCH = 64
SEED = 20261121
REST_CASES = 1800
GRPC_CASES = 1500


def json_records(frame) -> list[dict]:
    """Rows as JSON would carry them (NaN -> None, numpy scalars -> Python)."""
    return json.loads(frame.to_json(orient="records"))


def in_process(model_dir: Path, rows: list[dict]) -> list[float]:
    """Positive-class probabilities through the model object's own public path (kserve's ``Model.__call__``)."""
    from tollgate.serving.model import TollgateModel

    model = TollgateModel(MODEL, model_dir)
    model.load()
    answer, _ = asyncio.run(model({"instances": rows}))
    return [p["probability"] for p in answer["predictions"]]


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("fuzz-server") / "server.log"
    with ServerProcess(trained_model_dir, MODEL, max_batch=MAX_BATCH, log_path=log) as process:
        process.wait_ready(timeout=60)
        yield process


@pytest.fixture(scope="module")
def baseline(server) -> Baseline:
    metadata = httpx.get(f"{server.rest_url}/v2/models/{MODEL}").json()
    names = [i["name"] for i in metadata["inputs"]]
    rows = json_records(generate_applicants(rows=60, seed=4242)[names])
    return Baseline(MODEL, metadata["inputs"], rows, metadata["versions"][0])


def _report(tally: Tally) -> str:
    return f"{tally.failed} of {tally.sent} failed; statuses {dict(tally.by_status)}; first: {tally.failures[:5]}"


def test_malformed_rest_requests_never_get_a_5xx(server, baseline):
    tally = send_rest(server.rest_url, generate_rest(baseline, REST_CASES, SEED, MAX_BATCH), Tally())
    assert tally.sent == REST_CASES
    assert tally.failed == 0, _report(tally)
    # The sample reaches past the parsers: most cases are refused by the schema, some pass.
    assert tally.by_status["400"] > REST_CASES // 2 and tally.by_status["200"] > 0, _report(tally)
    assert server.alive()


def test_malformed_grpc_requests_never_get_internal_or_unknown(server, baseline):
    tally = send_grpc(server.grpc_url, generate_grpc(baseline, GRPC_CASES, SEED), Tally())
    assert tally.sent == GRPC_CASES
    assert tally.failed == 0, _report(tally)
    assert tally.by_status["INVALID_ARGUMENT"] > GRPC_CASES // 2 and tally.by_status["UNIMPLEMENTED"] > 0, _report(tally)
    assert server.alive()


def test_every_generator_class_is_exercised(baseline):
    rest_kinds = {case.kind for case in generate_rest(baseline, 200, SEED, MAX_BATCH)}
    grpc_kinds = {case.kind for case in generate_grpc(baseline, 50, SEED)}
    assert rest_kinds == set(REST_CLASSES) and grpc_kinds == set(GRPC_CLASSES)


def test_schemathesis_finds_no_server_error(server, tmp_path):
    """schemathesis 4 against the server's own OpenAPI document (check: not_a_server_error)."""
    config = tmp_path / "schemathesis.toml"
    # Without a real model name nearly every generated path is a 404; our generator covers names.
    config.write_text(f'[parameters]\n"path.model_name" = "{MODEL}"\n')
    report = tmp_path / "report.json"
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run",
               f"{server.rest_url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "12",
               "--seed", str(SEED), "--no-shrink", "--phases", "coverage,fuzzing", "--request-timeout", "30",
               "--report", "json", "--report-json-path", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert report.is_file(), result.stdout[-3000:] + result.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["exit_code"] == 0 and not summary["failures"] and not summary["errors"], result.stdout[-4000:]
    assert summary["test_cases"]["generated"] >= 200, summary["test_cases"]


def test_after_the_fuzz_the_server_is_healthy_and_answers_as_in_process(server, trained_model_dir, baseline):
    """Runs last in this module: health is green and predictions equal the in-process model's."""
    assert httpx.get(f"{server.rest_url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.rest_url}/v2/health/live").status_code == 200
    rows = baseline.rows[:20]
    expected = in_process(trained_model_dir, rows)
    for protocol in ("rest-v1", "rest-v2", "grpc"):
        url = server.grpc_url if protocol == "grpc" else server.rest_url
        answer = predict(protocol, url, MODEL, rows)
        np.testing.assert_allclose(answer.probabilities, expected, rtol=0, atol=1e-12, err_msg=protocol)
    # Thousands of client mistakes left a bounded log: short lines, no tracebacks.
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert max(len(line) for line in log.splitlines()) < 1200
    assert len(log) < 400_000, len(log)
