"""The prediction log written by the real model server (issue 15): ids, versions, refusals, drops, atomic files."""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import InferRequest

from tollgate.data.builtin import generate_applicants
from tollgate.serving.client import column_inputs
from tollgate.serving.predlog import INPUT_PREFIX, OUTPUT_PREFIX, list_log_files, read_log
from tollgate.serving.process import ServerProcess

MODEL = "credit-default"


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


@pytest.fixture(scope="module")
def columns(trained_model_dir) -> list[str]:
    return [c["name"] for c in json.loads((trained_model_dir / "input_schema.json").read_text())["columns"]]


@pytest.fixture(scope="module")
def rows(columns) -> list[dict]:
    frame = generate_applicants(rows=60, seed=77)[columns]
    return [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]


@pytest.fixture(scope="module")
def version(trained_model_dir) -> str:
    return str(json.loads((trained_model_dir / "metadata.json").read_text())["version"])


def _v2_body(batch: list[dict], request_id: str | None) -> dict:
    inputs = [{"name": t.name, "shape": t.shape, "datatype": t.datatype, "data": t.data}
              for t in column_inputs(batch, for_grpc=False)]
    return {"inputs": inputs} if request_id is None else {"id": request_id, "inputs": inputs}


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_records_land_with_versions_and_ids_under_concurrent_load(trained_model_dir, tmp_path, rows, version,
                                                                  columns):
    log_dir = tmp_path / "log"
    server = ServerProcess(trained_model_dir, MODEL, log_path=tmp_path / "server.log",
                           extra_args=["--log-uri", str(log_dir), "--log-flush-records", "7",
                                       "--log-flush-seconds", "0.5"])
    sent: dict[str, tuple[list[dict], list[float]]] = {}
    generated: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def rest(index: int) -> None:
        batch = rows[index % 50:index % 50 + 1 + index % 3]
        request_id = None if index % 5 == 0 else f"rest-{index}"
        with httpx.Client(timeout=30) as client:
            answer = client.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json=_v2_body(batch, request_id))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        returned = body["id"]
        assert returned and (request_id is None or returned == request_id)
        probabilities = next(o["data"] for o in body["outputs"] if o["name"] == "probability")
        with lock:
            sent[returned] = (batch, probabilities)
            if request_id is None:
                generated.append(returned)

    def grpc_call(index: int) -> None:
        batch = rows[index % 40:index % 40 + 2]
        request = InferRequest(model_name=MODEL, infer_inputs=column_inputs(batch, for_grpc=True),
                               request_id=f"grpc-{index}")
        with grpc.insecure_channel(server.grpc_url) as channel:
            answer = GRPCInferenceServiceStub(channel).ModelInfer(request.to_grpc(), timeout=30)
        assert answer.id == f"grpc-{index}"
        probabilities = list(next(o for o in answer.outputs if o.name == "probability").contents.fp64_contents)
        with lock:
            sent[answer.id] = (batch, probabilities)

    def v1(index: int) -> None:
        batch = rows[index:index + 3]
        headers = {"x-request-id": f"v1-{index}"} if index % 2 else {}
        with httpx.Client(timeout=30) as client:
            answer = client.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json={"instances": batch},
                                 headers=headers)
        assert answer.status_code == 200, answer.text
        returned = answer.headers["x-request-id"]
        assert returned == headers.get("x-request-id", returned) and returned
        with lock:
            sent[returned] = (batch, [p["probability"] for p in answer.json()["predictions"]])
            if not headers:
                generated.append(returned)

    def bad(index: int) -> None:
        batch = [dict(rows[0], age="not a number")]
        with httpx.Client(timeout=30) as client:
            answer = client.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json=_v2_body(batch, f"bad-{index}"))
            wrong_version = client.post(f"{server.rest_url}/v2/models/{MODEL}/versions/999/infer",
                                        json=_v2_body(rows[:1], f"old-{index}"))
        assert answer.status_code == 400 and wrong_version.status_code == 404
        with lock:
            refused.append(f"bad-{index}")

    with server:
        server.wait_ready(timeout=60)
        with ThreadPoolExecutor(max_workers=8) as pool:
            jobs = [pool.submit(rest, i) for i in range(40)] + [pool.submit(grpc_call, i) for i in range(16)]
            jobs += [pool.submit(bad, i) for i in range(4)] + [pool.submit(v1, i) for i in range(10)]
            for job in jobs:
                job.result()
    assert server.process.returncode == 0, "the server did not shut down cleanly on SIGTERM"

    log = read_log(str(log_dir), MODEL)
    assert not list(log_dir.rglob(".*.tmp")), "no temporary file is left after a clean shutdown"
    assert set(log["model_version"]) == {version}
    assert set(log["model_name"]) == {MODEL}
    files = list_log_files(str(log_dir), MODEL)
    assert len(files) > 1, "flush_records=7 must have produced several files"
    assert all(f"/version={version}/" in f and "/date=" in f for f in files)

    answered = log[log["error"].isna()]
    assert set(answered["request_id"]) == set(sent)
    assert len(generated) == 8 + 5 and all(len(g) == 32 for g in generated)
    for request_id, (batch, probabilities) in sent.items():
        logged = answered[answered["request_id"] == request_id].sort_values("row")
        assert logged["row"].tolist() == list(range(len(batch)))
        protocol = "v2-grpc" if request_id.startswith("grpc-") else "v1-rest" if request_id.startswith("v1-") \
            else "v2-rest"
        if request_id not in generated:
            assert set(logged["protocol"]) == {protocol}
        np.testing.assert_allclose(logged[OUTPUT_PREFIX + "probability"], probabilities, rtol=0, atol=0)
        for column in columns:
            expected = [r[column] for r in batch]
            got = [_plain(v) for v in logged[INPUT_PREFIX + column]]
            # The log holds the values after schema casting: numbers as floats, categories as text.
            assert [None if e is None else (float(e) if isinstance(e, (int, float)) and not isinstance(e, bool)
                                            else e) for e in expected] == got, column
    assert (answered["latency_ms"] > 0).all()

    errors = log[log["error"].notna()]
    by_id = dict(zip(errors["request_id"], errors["error"], strict=True))
    for request_id in refused:
        assert by_id[request_id] == "InvalidInput"
    assert sorted(errors["error"]).count("VersionNotFound") == 4


def test_full_queue_drops_and_counts_without_failing_a_request(trained_model_dir, tmp_path, rows):
    # An S3 endpoint that accepts connections and never answers: the writer stalls on its first PUT.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)
    endpoint = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
    server = ServerProcess(trained_model_dir, MODEL, log_path=tmp_path / "server.log",
                           env={"S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
                           extra_args=["--log-uri", "s3://monitoring/logs", "--log-flush-records", "1",
                                       "--log-queue-size", "2", "--no-grpc"])
    try:
        with server:
            server._grpc_ready = lambda: True
            server.wait_ready(timeout=60)
            with httpx.Client(timeout=30) as client:
                for index in range(40):
                    answer = client.post(f"{server.rest_url}/v2/models/{MODEL}/infer",
                                         json=_v2_body(rows[index:index + 1], f"r{index}"))
                    assert answer.status_code == 200, answer.text
                metrics = client.get(f"{server.rest_url}/metrics").text
            dropped = _metric(metrics, "tollgate_prediction_log_dropped_total", '{reason="queue_full"}')
            # One record is in the stalled PUT, at most two wait in the queue: the rest were dropped and counted.
            assert 37 <= dropped <= 40, metrics[-2000:]
            blackhole.close()
    finally:
        blackhole.close()


CRASH_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from kserve.protocol.infer_type import InferInput
    from tollgate.serving import predlog
    from tollgate.serving.schema import InputSchema

    model_dir, log_dir, crash = sys.argv[1], sys.argv[2], sys.argv[3] == "crash"
    schema = InputSchema.from_dict(json.loads((Path(model_dir) / "input_schema.json").read_text()))
    rows = json.loads(sys.stdin.read())
    real_write = predlog.write_parquet

    def half_then_die(table, sink):
        import io
        buffer = io.BytesIO()
        real_write(table, buffer)
        data = buffer.getvalue()
        sink.write(data[: len(data) // 2])
        sink.flush()
        os._exit(17)  # the process dies in the middle of writing the file

    if crash:
        predlog.write_parquet = half_then_die
    log = predlog.PredictionLog(log_dir, "credit-default", "3", [c.name for c in schema.columns],
                                schema.columns_from_tensors, flush_records=5, flush_seconds=60).start()
    for index, row in enumerate(rows):
        inputs = [InferInput(name=k, shape=[1], datatype="BYTES", data=["" if v is None else str(v)])
                  for k, v in row.items()]
        log.record(predlog.Entry(time.time(), f"id-{index}", "v2-rest", 1.0, None, inputs,
                                 [("probability", [0.5])]))
    log.close()
""")


def test_crash_mid_flush_leaves_no_partial_file_visible(trained_model_dir, tmp_path, rows):
    log_dir = tmp_path / "log"
    payload = json.dumps(rows[:5])
    crashed = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(trained_model_dir), str(log_dir), "crash"],
                             input=payload, text=True, capture_output=True, timeout=120)
    assert crashed.returncode == 17, crashed.stderr
    leftovers = [p for p in log_dir.rglob("*") if p.is_file()]
    assert leftovers and all(p.name.startswith(".") for p in leftovers), "the crash happened mid-write"
    assert list_log_files(str(log_dir), MODEL) == []
    assert read_log(str(log_dir), MODEL).empty

    clean = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(trained_model_dir), str(log_dir), "ok"],
                           input=payload, text=True, capture_output=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    log = read_log(str(log_dir), MODEL)
    assert sorted(log["request_id"]) == [f"id-{i}" for i in range(5)]
    assert log[INPUT_PREFIX + "age"].tolist() == [float(r["age"]) for r in rows[:5]]


def test_server_writes_the_log_to_s3(trained_model_dir, tmp_path, rows, s3_bucket, version):
    server = ServerProcess(trained_model_dir, MODEL, log_path=tmp_path / "server.log",
                           extra_args=["--log-uri", f"s3://{s3_bucket}/predictions", "--no-grpc"])
    with server:
        server._grpc_ready = lambda: True
        server.wait_ready(timeout=60)
        with httpx.Client(timeout=30) as client:
            for index in range(5):
                answer = client.post(f"{server.rest_url}/v2/models/{MODEL}/infer",
                                     json=_v2_body(rows[index:index + 2], f"s3-{index}"))
                assert answer.status_code == 200, answer.text
    # Shutdown flushed: one PUT per partition, readable back through the same S3 API.
    log = read_log(f"s3://{s3_bucket}/predictions", MODEL)
    assert sorted(set(log["request_id"])) == [f"s3-{i}" for i in range(5)]
    assert len(log) == 10 and set(log["model_version"]) == {version}
    assert all(key.startswith(f"s3://{s3_bucket}/predictions/{MODEL}/date=")
               for key in list_log_files(f"s3://{s3_bucket}/predictions", MODEL))


def test_off_unless_configured(trained_model_dir, tmp_path, rows):
    with ServerProcess(trained_model_dir, MODEL, log_path=tmp_path / "server.log", extra_args=["--no-grpc"]) as server:
        server._grpc_ready = lambda: True
        server.wait_ready(timeout=60)
        answer = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json=_v2_body(rows[:1], None), timeout=30)
        assert answer.status_code == 200
        # No log: the answer keeps kserve's behaviour (no generated id).
        assert not answer.json().get("id")
    assert not any(Path(tmp_path).rglob("*.parquet"))


def test_files_whose_column_types_differ_are_read_together(tmp_path):
    # Logs written before v1 and v2 multiclass answers were logged alike hold the class
    # probabilities as a struct in one file and a list in another; a categorical may also have
    # been logged as numbers in one flush and as text in the next. `tollgate monitor` must still
    # read the window (as text, like the writer's own rule for mixed values), not crash.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tollgate.serving.predlog import partition_key

    def write(name: str, table: pa.Table) -> None:
        path = tmp_path / partition_key(MODEL, "2026-11-22", "1", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

    stamp = pa.array([1_795_000_000_000_000] * 2, type=pa.timestamp("us", tz="UTC"))
    common = {"time": stamp, "request_id": ["a", "b"], "row": [0, 0], "error": pa.array([None, None], pa.string())}
    write("part-1.parquet", pa.table({**common, "input.region": [3, 4],
                                      "output.probabilities": [{"high": 0.2, "low": 0.8}, {"high": 0.6, "low": 0.4}]}))
    write("part-2.parquet", pa.table({**common, "request_id": ["c", "d"], "input.region": ["north", None],
                                      "output.probabilities": [[0.3, 0.7], [0.9, 0.1]]}))
    log = read_log(str(tmp_path), MODEL)
    assert log["request_id"].tolist() == ["a", "b", "c", "d"]
    assert log["input.region"].tolist() == ["3", "4", "north", None]
    assert log["output.probabilities"].tolist() == ["{'high': 0.2, 'low': 0.8}", "{'high': 0.6, 'low': 0.4}",
                                                    "[0.3, 0.7]", "[0.9, 0.1]"]
    assert log["row"].tolist() == [0, 0, 0, 0]  # columns of one type keep it


def test_the_counters_are_registered_with_the_first_log_not_at_import():
    # Importing the module must not change the process's Prometheus registry (a server with the log
    # off has nothing to count); the first log registers both counters, a second one reuses them.
    script = textwrap.dedent("""
        from prometheus_client import REGISTRY
        import tollgate.serving.predlog as predlog

        def names():
            return sorted(m.name for m in REGISTRY.collect() if m.name.startswith("tollgate_prediction_log"))

        print(names())
        first = predlog.PredictionLog("/tmp/unused", "m", "1", ["x"], cast_inputs=dict)
        second = predlog.PredictionLog("/tmp/unused", "m", "2", ["x"], cast_inputs=dict)
        print(names(), first.counters is second.counters)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    registered = ["tollgate_prediction_log_dropped", "tollgate_prediction_log_written"]
    assert result.stdout.splitlines() == ["[]", f"{registered} True"]
