"""``tollgate serve`` as a real process and ``tollgate predict`` against it, for every protocol."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import free_port
from tollgate.cli import app
from tollgate.data.builtin import generate_applicants
from tollgate.serving.runtime import OnnxModel

MODEL = "credit-default"


@pytest.fixture(scope="module")
def registry(trained_model_dir, tmp_path_factory) -> Path:
    """A registry holding the trained version as v1 with production -> v1."""
    from tollgate.registry import open_registry

    root = tmp_path_factory.mktemp("cli-registry") / "registry"
    reg = open_registry(str(root))
    staged = tmp_path_factory.mktemp("staged")
    for name in ("model.onnx", "input_schema.json"):
        shutil.copy(trained_model_dir / name, staged / name)
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    version = reg.register(MODEL, staged, {k: v for k, v in metadata.items() if k not in ("version", "created_at")})
    reg.promote(MODEL, version.version)
    return root


@pytest.fixture(scope="module")
def served(registry, tmp_path_factory):
    """`tollgate serve --alias production` on free loopback ports; stopped with SIGTERM afterwards."""
    from tollgate.registry import open_registry

    http_port, grpc_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "tollgate.cli", "serve", "--alias", "production",
                                    "--registry", str(registry), "--http-port", str(http_port),
                                    "--grpc-port", str(grpc_port)],
                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/v2/models/{MODEL}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"tollgate serve did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    time.sleep(0.5)  # gRPC starts alongside REST
    yield {"rest": f"http://127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}", "log": log,
           "version_dir": Path(open_registry(str(registry)).resolve(MODEL, "production").uri)}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, "tollgate serve did not shut down cleanly on SIGTERM"


@pytest.fixture(scope="module")
def rows_files(trained_model_dir, tmp_path_factory):
    names = [c["name"] for c in json.loads((trained_model_dir / "input_schema.json").read_text())["columns"]]
    frame = generate_applicants(rows=5, seed=77)[names]
    folder = tmp_path_factory.mktemp("rows")
    frame.to_csv(folder / "rows.csv", index=False)
    frame.to_json(folder / "rows.json", orient="records")
    schema = json.loads((trained_model_dir / "input_schema.json").read_text())
    expected = OnnxModel.from_file(trained_model_dir / "model.onnx", schema).predict_proba(frame)[:, 1]
    return folder / "rows.csv", folder / "rows.json", expected


def test_serve_prints_where_it_listens(served):
    text = served["log"].read_text()
    assert "Serving credit-default v1 (production)" in text
    assert "Uvicorn running on http://127.0.0.1" in text
    assert "HTTP/1.1" not in text, "no access log unless serving.request_logging is true"


@pytest.mark.parametrize("protocol", ["rest-v1", "rest-v2", "grpc"])
@pytest.mark.parametrize("file_kind", ["csv", "json"])
def test_predict_json_output_matches_in_process(served, rows_files, protocol, file_kind):
    csv_file, json_file, expected = rows_files
    url = served["grpc"] if protocol == "grpc" else served["rest"]
    result = CliRunner().invoke(app, ["predict", "--protocol", protocol, "--url", url, "--json",
                                      "--file", str(csv_file if file_kind == "csv" else json_file)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["model_version"] == "1"
    np.testing.assert_allclose([p["probability"] for p in body["predictions"]], expected, rtol=0, atol=1e-12)


def test_predict_prints_a_table(served, rows_files):
    result = CliRunner().invoke(app, ["predict", "--protocol", "rest-v2", "--url", served["rest"],
                                      "--file", str(rows_files[0])], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "credit-default v1 via rest-v2" in result.output
    assert "predicted_class" in result.output and "probability" in result.output
    # One table row per sent row, in order: its index, the class at the version's threshold and the
    # probability in-process onnxruntime gives the same rows, to the 4 decimals the CLI prints.
    expected = rows_files[2]
    threshold = json.loads((served["version_dir"] / "input_schema.json").read_text()).get("decision_threshold", 0.5)
    printed = [tuple(cell.strip() for cell in line.split("│")) for line in result.output.splitlines() if "│" in line]
    assert printed == [(str(i), str(int(p >= threshold)), f"{p:.4f}") for i, p in enumerate(expected)], result.output
    for p in expected:
        assert f"{p:.4f}" in result.output


def test_predict_reports_the_servers_refusal(served, tmp_path):
    rows = tmp_path / "bad.json"
    rows.write_text(json.dumps([{"age": "forty"}]))
    result = CliRunner().invoke(app, ["predict", "--protocol", "rest-v1", "--url", served["rest"], "--file", str(rows)])
    assert result.exit_code == 1
    assert "400" in result.output and "missing column" in result.output


def test_predict_rejects_unknown_protocol_and_missing_file(tmp_path):
    result = CliRunner().invoke(app, ["predict", "--protocol", "soap", "--file", str(tmp_path / "x.json")])
    assert result.exit_code == 1 and "unknown protocol 'soap'" in result.output
    result = CliRunner().invoke(app, ["predict", "--file", str(tmp_path / "x.json")])
    assert result.exit_code == 1 and "rows file not found" in result.output


def test_serve_explains_a_missing_alias(tmp_path):
    from tollgate.registry import open_registry

    empty = tmp_path / "empty"
    result = CliRunner().invoke(app, ["serve", "--registry", str(empty)])
    assert result.exit_code == 1
    # One line: what is missing, where, and what to do about it; no traceback.
    assert result.output == (f"error: {MODEL} has no 'production' alias yet in {open_registry(str(empty)).uri}; "
                             "run `tollgate run` first\n")


def test_serve_on_a_taken_port_is_one_line(registry):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--registry", str(registry), "--http-port", str(port),
                                          "--grpc-port", str(free_port())])
        assert result.exit_code == 1
        assert result.output.strip() == f"error: port {port} is in use; choose another with --http-port"
        result = CliRunner().invoke(app, ["serve", "--registry", str(registry), "--http-port", str(free_port()),
                                          "--grpc-port", str(port)])
        assert result.exit_code == 1
        assert result.output.strip() == f"error: port {port} is in use; choose another with --grpc-port"


def test_predict_over_grpc_reports_a_refusal_without_a_traceback(served, tmp_path):
    rows = tmp_path / "bad.json"
    rows.write_text(json.dumps([{"age": "forty"}]))
    result = subprocess.run([sys.executable, "-m", "tollgate.cli", "predict", "--protocol", "grpc", "--url",
                             served["grpc"], "--file", str(rows)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Failed to infer" not in result.stderr, result.stderr
    assert "inference_client" not in result.stderr, result.stderr
    # One message (Rich may wrap it over several terminal lines).
    assert result.stderr.startswith("error: grpc request") and result.stderr.count("error:") == 1, result.stderr
    assert "INVALID_ARGUMENT" in result.stderr


@pytest.mark.parametrize("protocol", ["rest-v1", "rest-v2", "grpc"])
def test_predict_types_csv_columns_from_the_models_metadata(served, trained_model_dir, tmp_path, protocol):
    """A text column whose values look like numbers (pandas would read floats) is sent as text,
    because the model's v2 metadata says BYTES; numbers and booleans are typed the same way."""
    from tests.test_serving_fuzz import in_process, json_records

    names = [c["name"] for c in json.loads((trained_model_dir / "input_schema.json").read_text())["columns"]]
    frame = generate_applicants(rows=4, seed=91)[names]
    frame["region"] = ["29.85", "7", "29.85", "1e3"]
    csv_file = tmp_path / "rows.csv"
    frame.to_csv(csv_file, index=False)
    expected = in_process(trained_model_dir, json_records(frame))
    url = served["grpc"] if protocol == "grpc" else served["rest"]
    result = CliRunner().invoke(app, ["predict", "--protocol", protocol, "--url", url, "--json", "--file", str(csv_file)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    np.testing.assert_allclose([p["probability"] for p in body["predictions"]], expected, rtol=0, atol=1e-12)


def test_predict_names_a_model_the_server_does_not_have(served, rows_files):
    result = CliRunner().invoke(app, ["predict", "--protocol", "rest-v2", "--url", served["rest"], "--model-name",
                                      "nope", "--file", str(rows_files[0])])
    assert result.exit_code == 1 and "has no model 'nope'" in result.output, result.output
