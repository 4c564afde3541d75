"""Benchmark: Tollgate's model server against its stack's floors, in-process onnxruntime and MLServer, in one run.

    .venv/bin/python bench/serving.py                    # 10 s per measurement
    .venv/bin/python bench/serving.py --duration 15 --family logistic_regression

What is measured, all on 127.0.0.1, load from a separate process:

* in-process: the scikit-learn ``Pipeline.predict_proba`` on the contract's input table,
  onnxruntime running ``model.onnx`` on ready feeds (the graph alone; the batch-256
  target's yardstick), and ``TollgateModel`` without a server (schema casts + graph);
* Tollgate (``python -m tollgate.serving``, the serving image's entry point) over REST
  v1, REST v2 and gRPC v2, serving ``model.onnx``;
* the stack's floors, each answering the *same request bodies* with a constant:
  a bare Starlette app on uvicorn that orjson-parses the body (REST); a ``kserve.Model``
  returning a constant under Tollgate's kserve ``ModelServer`` (same app, routes and
  gRPC service as Tollgate; REST v2 and gRPC); a bare ``grpc.aio`` server whose
  ModelInfer decodes the request and returns a constant (gRPC);
* MLServer 1.7.1 + mlserver-sklearn serving the same fitted Pipeline (``model.joblib``)
  over REST v2 and gRPC v2 (pandas content type, the contract's inputs: categoricals
  already as text, ``predict_proba`` output), default settings except
  ``parallel_workers: 0`` (its worker pool does not start with current uvloop), from its
  own virtual environment ``bench/.mlserver-venv`` that this script creates
  (``--mlserver-python`` to use another). It is not a dependency of Tollgate.

REST load: ``wrk`` (1 thread, ``--connections`` connections; ``apt-get install -y wrk``).
gRPC load: a Python closed-loop client in a child process (asyncio, ``--connections``
requests in flight, pre-serialised request bytes so the client does minimal work).
Everything computes with one OpenMP/BLAS thread (see ``ONE_THREAD``).
Batch 1 runs with ``--connections`` in flight; batch 256 with one, so its latency is
the server time per batch. Each measurement is bounded by ``--duration`` seconds and
``--max-requests`` requests. Before any load, Tollgate's answers are checked to be
identical to in-process onnxruntime, and MLServer's against the Pipeline.

Targets (issue 11): batch 1 — Tollgate REST v2 >= 40% of the bare-ASGI floor's req/s,
gRPC >= 40% of the bare grpc.aio floor's, p99 <= 2x p50, and >= 10x MLServer's req/s;
batch 256 — Tollgate p50 <= 2x in-process onnxruntime on the same rows.

"Prediction log on" rows (issue 15): the same server with ``--log-uri`` (a local directory),
batch 1, REST v2 and gRPC, and the records it dropped (``--skip-logging`` leaves them out);
targets: logging on >= 0.9x logging off req/s and p99 <= 2x p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Every contestant computes with one OpenMP/BLAS thread, as Tollgate's server does: with the
# default pools HistGradientBoosting's predict spin-waits, and p99 reaches ~700 ms here. Set
# before numpy/scikit-learn load; inherited by both servers.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
os.environ.update(ONE_THREAD)

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MLSERVER_VENV = HERE / ".mlserver-venv"
MODEL = "credit-default"
TARGET_RATIO_VS_MLSERVER = 10.0
TARGET_SHARE_OF_FLOOR = 0.4
TARGET_TAIL = 2.0
TARGET_BATCH_OVERHEAD = 2.0
BARE_ASGI = "bare Starlette+uvicorn"
KSERVE_CONSTANT = "kserve.Model constant"
BARE_GRPC = "bare grpc.aio"
# Issue 15: the prediction log may cost at most 10% of batch-1 throughput.
TARGET_LOGGING_RATIO = 0.9
LOGGING_ON = "Tollgate (prediction log on)"


# -- the model -------------------------------------------------------------------------------------


def build_version(workdir: Path, family: str, rows: int) -> tuple[Path, Any, Any]:
    """Train one candidate of the default grid on built-in data as train does (ONNX export included);
    lay it out as a registry version. Returns the directory, complete test rows and the fitted Pipeline."""
    from tollgate.config import load_config
    from tollgate.data.builtin import generate_applicants
    from tollgate.steps.candidates import config_grid
    from tollgate.steps.preprocess import build_feature_spec, split_dataset
    from tollgate.steps.train import save_candidate, train_candidate

    config = load_config()
    frame = generate_applicants(rows=rows, seed=config.data.builtin.seed)
    spec = build_feature_spec(frame, config.data.target, config.data.positive_label, config.data.drop,
                              config.data.date_column, max_categories=config.features.max_categories)
    splits = split_dataset(frame, spec, config.split.test_size, config.split.validation_size, config.split.seed)
    candidates = [c for c in config_grid(config)
                  if c.family == family]
    if not candidates:
        raise SystemExit(f"no {family} candidate in the default grid")
    result = train_candidate(splits.train, splits.validation, candidates[-1], spec)
    version_dir = workdir / "model"
    save_candidate(result, version_dir)
    (version_dir / "input_schema.json").write_text(json.dumps(spec.schema))
    (version_dir / "metadata.json").write_text(json.dumps({
        "version": 1, "model_name": MODEL, "candidate_id": candidates[-1].candidate_id,
        "features": spec.served_features().to_dict()}))
    # Complete rows only: MLServer's pandas codec has no way to receive a null, nor JSON a NaN.
    test = splits.test[spec.columns].dropna().reset_index(drop=True)
    return version_dir, test, result.model


def records(frame) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]


# -- measurements -----------------------------------------------------------------------------------


def summarize(latencies_s: list[float], elapsed: float) -> dict[str, float]:
    values = np.asarray(latencies_s) * 1000.0
    return {"req_s": len(values) / elapsed, "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)), "requests": int(len(values))}


def time_in_process(call, duration: float, max_calls: int) -> dict[str, float]:
    """Closed loop in this process: one call after another."""
    for _ in range(20):
        call()
    latencies = []
    started = time.perf_counter()
    while len(latencies) < max_calls and time.perf_counter() - started < duration:
        before = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - before)
    return summarize(latencies, time.perf_counter() - started)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, body: bytes, connections: int, duration: float, workdir: Path) -> dict[str, float]:
    """wrk, 1 thread, POSTing ``body`` as JSON; returns req/s and latency percentiles."""
    body_file = workdir / f"body-{abs(hash(body))}.json"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
                             "-s", str(script), url], capture_output=True, text=True, timeout=duration + 60).stdout
    percentiles = {p: float(v) * _UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    if not rate or "50" not in percentiles:
        raise RuntimeError(f"could not read wrk output:\n{output}")
    return {"req_s": float(rate.group(1)), "p50_ms": percentiles["50"], "p99_ms": percentiles["99"],
            "requests": int(total.group(1)) if total else 0, "errors": int(errors.group(1)) if errors else 0}


def run_grpc_load(target: str, request: bytes, connections: int, duration: float, max_requests: int,
                  workdir: Path) -> dict[str, float]:
    """The gRPC closed-loop client in a child process (see ``_grpc_client``)."""
    request_file = workdir / f"grpc-{abs(hash(request))}.bin"
    request_file.write_bytes(request)
    output = subprocess.run([sys.executable, __file__, "--grpc-client", target, str(request_file), str(connections),
                             str(duration), str(max_requests)], capture_output=True, text=True,
                            timeout=duration + 120)
    if output.returncode != 0:
        raise RuntimeError(f"gRPC load client failed:\n{output.stderr[-2000:]}")
    return json.loads(output.stdout)


def _grpc_client(target: str, request_file: str, connections: str, duration: str, max_requests: str) -> None:
    """Child-process entry: ``connections`` coroutines each sending the same request back to back."""
    import grpc

    request = Path(request_file).read_bytes()
    limit, seconds = int(max_requests), float(duration)

    async def main() -> dict[str, float]:
        async with grpc.aio.insecure_channel(target) as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            for _ in range(20):
                await infer(request, timeout=30)
            latencies: list[float] = []
            failures = 0
            started = time.perf_counter()

            async def worker() -> None:
                nonlocal failures
                while len(latencies) < limit and time.perf_counter() - started < seconds:
                    before = time.perf_counter()
                    try:
                        await infer(request, timeout=30)
                    except grpc.RpcError:
                        failures += 1
                        continue
                    latencies.append(time.perf_counter() - before)

            await asyncio.gather(*(worker() for _ in range(int(connections))))
            return {**summarize(latencies, time.perf_counter() - started), "errors": failures}

    print(json.dumps(asyncio.run(main())))


# -- request bodies ---------------------------------------------------------------------------------


def tollgate_bodies(rows: list[dict[str, Any]], schema: list[dict[str, Any]]) -> dict[str, Any]:
    """v1 JSON, v2 JSON and a serialised gRPC ModelInferRequest, one input per column."""
    from kserve.protocol.infer_type import InferInput, InferRequest

    from tollgate.serving.schema import OIP_DATATYPE

    columns = {c["name"]: [r[c["name"]] for r in rows] for c in schema}
    v2_inputs = [{"name": c["name"], "shape": [len(rows)], "datatype": OIP_DATATYPE[c["dtype"]], "data": columns[c["name"]]}
                 for c in schema]
    request = InferRequest(model_name=MODEL, infer_inputs=[
        InferInput(i["name"], i["shape"], i["datatype"], data=list(i["data"])) for i in v2_inputs])
    return {"v1": json.dumps({"instances": rows}).encode(), "v2": json.dumps({"inputs": v2_inputs}).encode(),
            "grpc": request.to_grpc().SerializeToString()}


def mlserver_bodies(inputs) -> dict[str, bytes]:
    """The contract's input table as MLServer needs it: pandas content type, text columns marked as str,
    numbers as FP64 (the float32 values, exactly), predict_proba asked for."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    entries = []
    for name in inputs.columns:
        text = inputs[name].dtype == object
        values = inputs[name].tolist() if text else [float(v) for v in inputs[name].to_numpy(dtype=np.float64)]
        entry = {"name": name, "shape": [len(inputs)], "datatype": "BYTES" if text else "FP64", "data": values}
        if text:
            entry["parameters"] = {"content_type": "str"}
        entries.append(entry)
    body = {"parameters": {"content_type": "pd"}, "inputs": entries, "outputs": [{"name": "predict_proba"}]}
    tensors = []
    for entry in entries:
        text = entry["datatype"] == "BYTES"
        contents = (pb.InferTensorContents(bytes_contents=[v.encode() for v in entry["data"]]) if text
                    else pb.InferTensorContents(fp64_contents=entry["data"]))
        tensor = pb.ModelInferRequest.InferInputTensor(name=entry["name"], datatype=entry["datatype"],
                                                       shape=entry["shape"], contents=contents)
        if text:
            tensor.parameters["content_type"].string_param = "str"
        tensors.append(tensor)
    request = pb.ModelInferRequest(model_name=MODEL, inputs=tensors,
                                   outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="predict_proba")])
    request.parameters["content_type"].string_param = "pd"
    return {"v2": json.dumps(body).encode(), "grpc": request.SerializeToString()}


# -- the stack's floors: the same requests, answered with a constant ---------------------------------


def _constant_v2_answer(model_name: str) -> dict[str, Any]:
    return {"model_name": model_name, "model_version": "1", "id": "",
            "outputs": [{"name": "predicted_class", "shape": [1], "datatype": "INT64", "data": [0]},
                        {"name": "probability", "shape": [1], "datatype": "FP64", "data": [0.25]}]}


def _serve_bare_asgi(port: int) -> None:
    """Starlette on uvicorn: orjson-parse the body, answer a constant. No validation, no model."""
    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    answer = orjson.dumps(_constant_v2_answer(MODEL))

    async def infer(request):
        orjson.loads(await request.body())
        return Response(answer, media_type="application/json")

    app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _serve_kserve_constant(http_port: int, grpc_port: int) -> None:
    """A ``kserve.Model`` answering a constant, under Tollgate's ModelServer (kserve's app, routes, gRPC service)."""
    from tollgate.serving import import_kserve_with_bare_argv

    import_kserve_with_bare_argv()
    from kserve import Model
    from kserve.protocol.infer_type import InferOutput, InferResponse

    from tollgate.serving.server import TollgateModelServer

    class Constant(Model):
        def load(self) -> bool:
            self.ready = True
            return True

        def validate(self, payload):  # as TollgateModel: no generic re-check
            return payload

        def predict(self, payload, headers=None):
            outputs = [InferOutput("predicted_class", [1], "INT64", data=[0]),
                       InferOutput("probability", [1], "FP64", data=[0.25])]
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs,
                                 from_grpc=payload.from_grpc)

    model = Constant(MODEL)
    model.load()
    TollgateModelServer(host="127.0.0.1", http_port=http_port, grpc_port=grpc_port, enable_grpc=True,
                        grace_period=5).start([model])


def _serve_bare_grpc(port: int) -> None:
    """grpc.aio with kserve's generated servicer: decode ModelInfer, answer a constant response."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    answer = pb.ModelInferResponse(model_name=MODEL, model_version="1", outputs=[
        pb.ModelInferResponse.InferOutputTensor(name="predicted_class", datatype="INT64", shape=[1],
                                                contents=pb.InferTensorContents(int64_contents=[0])),
        pb.ModelInferResponse.InferOutputTensor(name="probability", datatype="FP64", shape=[1],
                                                contents=pb.InferTensorContents(fp64_contents=[0.25]))])

    class Servicer(pb_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request, context):
            return answer

    async def main() -> None:
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


class FloorProcess:
    """One floor server in a child process (``bench/serving.py --floor <kind> <ports>``)."""

    def __init__(self, kind: str, workdir: Path):
        from tollgate.serving.process import free_port

        self.kind = kind
        self.http_port, self.grpc_port = free_port(), free_port()
        self.rest_url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.log_path = workdir / f"floor-{kind}.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, __file__, "--floor", kind, str(self.http_port),
                                         str(self.grpc_port)], stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **ONE_THREAD}, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        import socket

        port = self.grpc_port if self.kind == "grpc" else self.http_port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    if self.kind == "kserve":
                        with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=0.5):
                            pass
                    time.sleep(1.0)
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"floor {self.kind} did not start:\n" + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def _floor_main(kind: str, http_port: str, grpc_port: str) -> None:
    if kind == "asgi":
        _serve_bare_asgi(int(http_port))
    elif kind == "kserve":
        _serve_kserve_constant(int(http_port), int(grpc_port))
    elif kind == "grpc":
        _serve_bare_grpc(int(grpc_port))
    else:
        raise SystemExit(f"unknown floor {kind!r}")


# -- servers ----------------------------------------------------------------------------------------


def ensure_mlserver(python: str | None) -> str:
    """The MLServer interpreter: ``--mlserver-python``, else bench/.mlserver-venv (created on first use)."""
    if python:
        return python
    interpreter = MLSERVER_VENV / "bin" / "python"
    probe = [str(interpreter), "-c", "import mlserver, mlserver_sklearn, sklearn; print(mlserver.__version__)"]
    if interpreter.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "1.7.1":
        return str(interpreter)
    import numpy
    import pandas
    import sklearn

    print(f"creating {MLSERVER_VENV} with MLServer 1.7.1 (one-off, a few minutes)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    # The same scikit-learn/pandas/numpy as Tollgate, so both servers load the same pickle.
    subprocess.run([str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "mlserver==1.7.1", "mlserver-sklearn==1.7.1", f"scikit-learn=={sklearn.__version__}",
                    f"pandas=={pandas.__version__}", f"numpy=={numpy.__version__}"], check=True)
    return str(interpreter)


class MLServerProcess:
    """``mlserver start`` on free loopback ports with default settings otherwise."""

    def __init__(self, python: str, version_dir: Path, workdir: Path):
        from tollgate.serving.process import free_port

        self.http_port, self.grpc_port, metrics_port = free_port(), free_port(), free_port()
        folder = workdir / "mlserver"
        folder.mkdir()
        (folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": self.http_port, "grpc_port": self.grpc_port,
            "metrics_port": metrics_port,
            # MLServer's default worker pool (parallel_workers=1) dies at start here: its worker calls
            # asyncio.get_event_loop(), which uvloop 0.22+ refuses ("no current event loop"). Inference in
            # the main process is also MLServer's faster setting for one model (no IPC hop).
            "parallel_workers": 0}))
        (folder / "model-settings.json").write_text(json.dumps({
            "name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(version_dir / "model.joblib"), "version": "v1"}}))
        env = {**os.environ, **ONE_THREAD}
        mlserver = str(Path(python).parent / "mlserver")
        self.log = open(workdir / "mlserver.log", "wb")
        self.process = subprocess.Popen([mlserver, "start", str(folder)], stdout=self.log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
        self.rest_url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.workdir = workdir

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.rest_url}/v2/models/{MODEL}/ready", timeout=1).status_code == 200:
                    time.sleep(1.0)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("MLServer did not become ready:\n" + (self.workdir / "mlserver.log").read_text()[-3000:])

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


# -- correctness checks before load -----------------------------------------------------------------


def check_answers(name: str, got: list[float], expected: np.ndarray, tolerance: float = 1e-9) -> None:
    difference = float(np.max(np.abs(np.asarray(got) - expected)))
    if difference > tolerance:
        raise SystemExit(f"{name} answers differ from in-process predictions by {difference:.3g}; not benchmarking")


def check_tollgate(server, rows, expected) -> None:
    """Tollgate must answer exactly what onnxruntime computes in this process on the same model.onnx."""
    from tollgate.serving.client import predict

    for protocol in ("rest-v1", "rest-v2", "grpc"):
        answer = predict(protocol, server.grpc_url if protocol == "grpc" else server.rest_url, MODEL, rows)
        check_answers(f"Tollgate {protocol}", answer.probabilities, expected, tolerance=0.0)


def check_mlserver(server: MLServerProcess, bodies: dict[str, bytes], expected: np.ndarray) -> None:
    import grpc
    import httpx
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    response = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", content=bodies["v2"],
                          headers={"content-type": "application/json"}, timeout=30)
    response.raise_for_status()
    check_answers("MLServer REST v2", np.asarray(response.json()["outputs"][0]["data"]).reshape(-1, 2)[:, 1], expected)
    with grpc.insecure_channel(server.grpc_url) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        answer = pb.ModelInferResponse.FromString(infer(bodies["grpc"], timeout=30))
    output = answer.outputs[0]
    values = (np.frombuffer(answer.raw_output_contents[0], dtype=np.float64) if answer.raw_output_contents
              else np.asarray(output.contents.fp64_contents))
    check_answers("MLServer gRPC", values.reshape(-1, 2)[:, 1], expected)


# -- the run ----------------------------------------------------------------------------------------


def main() -> int:
    from tollgate.serving import import_kserve_with_bare_argv

    import_kserve_with_bare_argv()  # kserve would read this script's flags on import (see tollgate.serving)
    if len(sys.argv) > 1 and sys.argv[1] == "--grpc-client":
        _grpc_client(*sys.argv[2:7])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--floor":
        _floor_main(*sys.argv[2:5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="hist_gradient_boosting",
                        choices=["hist_gradient_boosting", "logistic_regression", "random_forest"])
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds per measurement.")
    parser.add_argument("--max-requests", type=int, default=200_000, help="Requests per measurement, at most.")
    parser.add_argument("--connections", type=int, default=8, help="Requests in flight at batch 1.")
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--mlserver-python", default=None, help="Interpreter with mlserver 1.7.1 installed.")
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument("--skip-logging", action="store_true", help="Leave out the 'prediction log on' rows.")
    parser.add_argument("--output", default=str(HERE / "results" / "serving.json"))
    options = parser.parse_args()
    batches = [int(b) for b in options.batches.split(",")]
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        print("wrk not found: REST rows are skipped. Install it with `apt-get update && apt-get install -y wrk`.")

    from tollgate.serving.model import TollgateModel
    from tollgate.serving.process import ServerProcess
    from tollgate.serving.schema import feeds_from_inputs, model_inputs

    workdir = Path(tempfile.mkdtemp(prefix="tollgate-bench-serving-"))
    results: list[dict[str, Any]] = []

    def record(server: str, protocol: str, batch: int, measured: dict[str, float]) -> None:
        row = {"server": server, "protocol": protocol, "batch": batch, **measured}
        results.append(row)
        print(f"  {server:<28} {protocol:<8} batch {batch:<4} {row['req_s']:>9.1f} req/s  p50 {row['p50_ms']:7.3f} ms"
              f"  p99 {row['p99_ms']:7.3f} ms" + (f"  ERRORS {row['errors']}" if row.get("errors") else ""), flush=True)

    try:
        print(f"training a {options.family} model on {options.train_rows} built-in rows...", flush=True)
        version_dir, test, pipeline = build_version(workdir, options.family, options.train_rows)
        schema_document = json.loads((version_dir / "input_schema.json").read_text())
        schema = schema_document["columns"]
        served = TollgateModel(MODEL, version_dir)
        served.load()
        print(f"Tollgate prediction path: {served.path_description}")
        samples = {b: test.head(b) for b in batches}
        if any(len(s) < b for b, s in samples.items()):
            raise SystemExit(f"the test split has only {len(test)} complete rows")
        inputs = {b: model_inputs(s, schema_document) for b, s in samples.items()}
        feeds = {b: feeds_from_inputs(i) for b, i in inputs.items()}
        expected_graph = {b: served.graph.run(f)[:, 1].astype(np.float64) for b, f in feeds.items()}
        expected_pipeline = {b: pipeline.predict_proba(i)[:, 1] for b, i in inputs.items()}

        print("in-process (one thread):")
        for batch in batches:
            record("in-process Pipeline", "-", batch, time_in_process(
                lambda i=inputs[batch]: pipeline.predict_proba(i), options.duration, options.max_requests))
            record("in-process onnxruntime", "-", batch, time_in_process(
                lambda f=feeds[batch]: served.graph.run(f), options.duration, options.max_requests))
            columns = served.schema.columns_from_instances(records(samples[batch]))
            record("in-process TollgateModel", "-", batch, time_in_process(
                lambda c=columns, n=batch: served.predict_columns(c, n), options.duration, options.max_requests))

        print("Tollgate model server (python -m tollgate.serving):")
        with ServerProcess(version_dir, MODEL, log_path=workdir / "tollgate.log") as server:
            server.wait_ready(120)
            for batch, frame in samples.items():
                rows = records(frame)
                check_tollgate(server, rows, expected_graph[batch])
                bodies = tollgate_bodies(rows, schema)
                connections = options.connections if batch == 1 else 1
                if have_wrk:
                    record("Tollgate", "REST v1", batch, run_wrk(f"{server.rest_url}/v1/models/{MODEL}:predict",
                                                                 bodies["v1"], connections, options.duration, workdir))
                    record("Tollgate", "REST v2", batch, run_wrk(f"{server.rest_url}/v2/models/{MODEL}/infer",
                                                                 bodies["v2"], connections, options.duration, workdir))
                record("Tollgate", "gRPC v2", batch, run_grpc_load(server.grpc_url, bodies["grpc"], connections,
                                                                   options.duration, options.max_requests, workdir))

        print("floors (the same batch-1 bodies, answered with a constant):")
        bodies = tollgate_bodies(records(samples[min(batches)]), schema)
        floors = (("asgi", BARE_ASGI, ("REST v2",)), ("kserve", KSERVE_CONSTANT, ("REST v2", "gRPC v2")),
                  ("grpc", BARE_GRPC, ("gRPC v2",)))
        for kind, label, protocols in floors:
            floor = FloorProcess(kind, workdir)
            try:
                floor.wait_ready()
                for protocol in protocols:
                    if protocol == "REST v2" and have_wrk:
                        record(label, protocol, min(batches), run_wrk(
                            f"{floor.rest_url}/v2/models/{MODEL}/infer", bodies["v2"], options.connections,
                            options.duration, workdir))
                    elif protocol == "gRPC v2":
                        record(label, protocol, min(batches), run_grpc_load(
                            floor.grpc_url, bodies["grpc"], options.connections, options.duration,
                            options.max_requests, workdir))
            finally:
                floor.stop()

        if not options.skip_logging:
            # The same server with the prediction log on (issue 15): batch 1, REST v2 and gRPC.
            print("Tollgate model server, prediction log on (--log-uri, local directory):")
            log_dir = workdir / "prediction-log"
            with ServerProcess(version_dir, MODEL, log_path=workdir / "tollgate-logging.log",
                               extra_args=["--log-uri", str(log_dir)]) as server:
                server.wait_ready(120)
                rows = records(samples[1]) if 1 in samples else records(test.head(1))
                bodies = tollgate_bodies(rows, schema)
                if have_wrk:
                    record(LOGGING_ON, "REST v2", 1, run_wrk(f"{server.rest_url}/v2/models/{MODEL}/infer",
                                                             bodies["v2"], options.connections, options.duration,
                                                             workdir))
                record(LOGGING_ON, "gRPC v2", 1, run_grpc_load(server.grpc_url, bodies["grpc"], options.connections,
                                                               options.duration, options.max_requests, workdir))
                dropped = _dropped(server.rest_url)
            logged = sum(1 for _ in log_dir.rglob("*.parquet"))
            print(f"  prediction log: {logged} files written, {dropped:.0f} records dropped (queue full)")
            for row in results:
                if row["server"] == LOGGING_ON:
                    row["dropped_records"] = dropped

        if not options.skip_mlserver:
            python = ensure_mlserver(options.mlserver_python)
            print("MLServer 1.7.1 + mlserver-sklearn (same fitted Pipeline, parallel_workers=0):")
            mlserver = MLServerProcess(python, version_dir, workdir)
            try:
                mlserver.wait_ready()
                for batch in batches:
                    mlserver_request = mlserver_bodies(inputs[batch])
                    check_mlserver(mlserver, mlserver_request, expected_pipeline[batch])
                    connections = options.connections if batch == 1 else 1
                    if have_wrk:
                        record("MLServer 1.7.1", "REST v2", batch, run_wrk(
                            f"{mlserver.rest_url}/v2/models/{MODEL}/infer", mlserver_request["v2"], connections,
                            options.duration, workdir))
                    record("MLServer 1.7.1", "gRPC v2", batch, run_grpc_load(
                        mlserver.grpc_url, mlserver_request["grpc"], connections, options.duration,
                        options.max_requests, workdir))
            finally:
                mlserver.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    verdicts = judge(results)
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                                  "options": vars(options), "results": results, "verdicts": verdicts}, indent=2))
    print(f"results written to {output}")
    return 0 if all(v["met"] for v in verdicts) else 1


def _dropped(rest_url: str) -> float:
    """``tollgate_prediction_log_dropped_total`` (all reasons) from the server's /metrics."""
    import httpx

    text = httpx.get(f"{rest_url}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(r"^tollgate_prediction_log_dropped_total\{[^}]*\} (\S+)$",
                                                       text, re.M))


def judge(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compute the ratios behind each target and print them."""
    def find(server: str, protocol: str, batch: int) -> dict[str, Any] | None:
        return next((r for r in results
                     if r["server"] == server and r["protocol"] == protocol and r["batch"] == batch), None)

    verdicts = []
    for protocol in ("REST v2", "gRPC v2"):
        logged, plain = find(LOGGING_ON, protocol, 1), find("Tollgate", protocol, 1)
        if logged and plain:
            ratio = logged["req_s"] / plain["req_s"]
            verdicts.append({"target": f"batch 1 {protocol}: logging on req/s >= {TARGET_LOGGING_RATIO}x logging off",
                             "value": round(ratio, 2), "met": ratio >= TARGET_LOGGING_RATIO})
            tail = logged["p99_ms"] / logged["p50_ms"]
            verdicts.append({"target": f"batch 1 {protocol}: logging on p99 <= {TARGET_TAIL}x p50",
                             "value": round(tail, 2), "met": tail <= TARGET_TAIL})
    print("\nratios:")
    for protocol, floor_name in (("REST v2", BARE_ASGI), ("gRPC v2", BARE_GRPC)):
        ours, floor = find("Tollgate", protocol, 1), find(floor_name, protocol, 1)
        if ours and floor:
            share = ours["req_s"] / floor["req_s"]
            kserve_floor = find(KSERVE_CONSTANT, protocol, 1)
            versus_kserve = round(ours["req_s"] / kserve_floor["req_s"], 3) if kserve_floor else None
            verdicts.append({"target": f"batch 1 {protocol}: Tollgate req/s >= {TARGET_SHARE_OF_FLOOR:.0%} of the "
                                       f"{floor_name} floor", "value": round(share, 3),
                             "met": share >= TARGET_SHARE_OF_FLOOR, "vs_kserve_constant": versus_kserve})
    for protocol in ("REST v2", "gRPC v2"):
        ours, theirs = find("Tollgate", protocol, 1), find("MLServer 1.7.1", protocol, 1)
        if ours and theirs:
            ratio = ours["req_s"] / theirs["req_s"]
            verdicts.append({"target": f"batch 1 {protocol}: Tollgate req/s >= {TARGET_RATIO_VS_MLSERVER:g}x MLServer",
                             "value": round(ratio, 2), "met": ratio >= TARGET_RATIO_VS_MLSERVER})
    for protocol in ("REST v1", "REST v2", "gRPC v2"):
        ours = find("Tollgate", protocol, 1)
        if ours:
            tail = ours["p99_ms"] / ours["p50_ms"]
            verdicts.append({"target": f"batch 1 {protocol}: Tollgate p99 <= {TARGET_TAIL:g}x p50",
                             "value": round(tail, 2), "met": tail <= TARGET_TAIL})
    graph = find("in-process onnxruntime", "-", 256)
    for protocol in ("REST v1", "REST v2", "gRPC v2"):
        ours = find("Tollgate", protocol, 256)
        if ours and graph:
            ratio = ours["p50_ms"] / graph["p50_ms"]
            verdicts.append({"target": f"batch 256 {protocol}: Tollgate p50 <= {TARGET_BATCH_OVERHEAD:g}x in-process "
                                       "onnxruntime", "value": round(ratio, 2), "met": ratio <= TARGET_BATCH_OVERHEAD})
    for verdict in verdicts:
        extra = (f" (of the kserve.Model constant: {verdict['vs_kserve_constant']:.0%})"
                 if verdict.get("vs_kserve_constant") else "")
        print(f"  {'MET ' if verdict['met'] else 'MISSED'}  {verdict['target']}: {verdict['value']}{extra}")
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
