"""Benchmark: Tollgate's model server against in-process predict and MLServer 1.7.1, in one run.

    .venv/bin/python bench/serving.py                    # 10 s per measurement
    .venv/bin/python bench/serving.py --duration 15 --family logistic_regression

What is measured, all on 127.0.0.1, load from a separate process:

* in-process ``Pipeline.predict_proba`` on a DataFrame (what a user would call; the
  limit the servers are compared with) and Tollgate's compiled path without a server;
* Tollgate (``python -m tollgate.serving``, the serving image's entry point) over REST
  v1, REST v2 and gRPC v2;
* MLServer 1.7.1 + mlserver-sklearn serving the *same* model.joblib over REST v2 and
  gRPC v2 (pandas content type, ``predict_proba`` output), default settings except
  ``parallel_workers: 0`` (its worker pool does not start with current uvloop),
  from its own virtual environment ``bench/.mlserver-venv`` that this script creates
  (``--mlserver-python`` to use another). It is not a dependency of Tollgate.

REST load: ``wrk`` (1 thread, ``--connections`` connections; ``apt-get install -y wrk``).
gRPC load: a Python closed-loop client in a child process (asyncio, ``--connections``
requests in flight, pre-serialised request bytes so the client does minimal work).
Everything computes with one OpenMP/BLAS thread (see ``ONE_THREAD``).
Batch 1 runs with ``--connections`` in flight; batch 256 with one, so its latency is
the server time per batch. Each measurement is bounded by ``--duration`` seconds and
``--max-requests`` requests. Before any load, each server's answers are checked against
in-process ``predict_proba``.

Targets: batch 1 — Tollgate >= 1.5x MLServer req/s on REST v2 and on gRPC, p99 <= 2x p50;
batch 256 — Tollgate latency <= 1.3x in-process ``predict_proba``.
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
TARGET_RATIO_VS_MLSERVER = 1.5
TARGET_TAIL = 2.0
TARGET_BATCH_OVERHEAD = 1.3


# -- the model -------------------------------------------------------------------------------------


def build_version(workdir: Path, family: str, rows: int) -> tuple[Path, Any]:
    """Train one candidate of the default grid on built-in data; lay it out as a registry version."""
    import joblib

    from tollgate.config import load_config
    from tollgate.data.builtin import generate_applicants
    from tollgate.steps.preprocess import LABEL, build_feature_spec, split_dataset
    from tollgate.steps.train import build_model, expand_candidates

    config = load_config()
    frame = generate_applicants(rows=rows, seed=config.data.builtin.seed)
    spec = build_feature_spec(frame, config.data.target, config.data.positive_label, config.data.drop,
                              config.data.date_column, max_categories=config.features.max_categories)
    splits = split_dataset(frame, spec, config.split.test_size, config.split.validation_size, config.split.seed)
    candidates = [c for c in expand_candidates([c.model_dump() for c in config.train.candidates], config.split.seed)
                  if c["family"] == family]
    if not candidates:
        raise SystemExit(f"no {family} candidate in the default grid")
    model = build_model(candidates[-1], spec).fit(splits.train[spec.columns], splits.train[LABEL])
    version_dir = workdir / "model"
    version_dir.mkdir(parents=True)
    joblib.dump(model, version_dir / "model.joblib")
    (version_dir / "input_schema.json").write_text(json.dumps(spec.schema))
    (version_dir / "metadata.json").write_text(json.dumps({
        "version": 1, "model_name": MODEL, "candidate_id": candidates[-1]["candidate_id"],
        "features": {"target": spec.target, "positive_label": spec.positive_label, "negative_label": spec.negative_label}}))
    # Complete rows only: MLServer's pandas codec has no way to receive a null string.
    test = splits.test[spec.columns].dropna().reset_index(drop=True)
    return version_dir, test


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


def mlserver_bodies(rows: list[dict[str, Any]], schema: list[dict[str, Any]]) -> dict[str, bytes]:
    """The same rows as MLServer needs them: pandas content type, strings marked as str, predict_proba asked for."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    from tollgate.serving.schema import OIP_DATATYPE

    inputs = []
    for column in schema:
        datatype = OIP_DATATYPE[column["dtype"]]
        entry = {"name": column["name"], "shape": [len(rows)], "datatype": datatype,
                 "data": [r[column["name"]] for r in rows]}
        if datatype == "BYTES":
            entry["parameters"] = {"content_type": "str"}
        inputs.append(entry)
    body = {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": [{"name": "predict_proba"}]}
    contents_field = {"FP64": "fp64_contents", "INT64": "int64_contents", "BOOL": "bool_contents",
                      "BYTES": "bytes_contents"}
    tensors = []
    for entry in inputs:
        data = [v.encode() if isinstance(v, str) else v for v in entry["data"]]
        tensor = pb.ModelInferRequest.InferInputTensor(
            name=entry["name"], datatype=entry["datatype"], shape=entry["shape"],
            contents=pb.InferTensorContents(**{contents_field[entry["datatype"]]: data}))
        if entry["datatype"] == "BYTES":
            tensor.parameters["content_type"].string_param = "str"
        tensors.append(tensor)
    request = pb.ModelInferRequest(model_name=MODEL, inputs=tensors,
                                   outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="predict_proba")])
    request.parameters["content_type"].string_param = "pd"
    return {"v2": json.dumps(body).encode(), "grpc": request.SerializeToString()}


# -- servers ----------------------------------------------------------------------------------------


def ensure_mlserver(python: str | None) -> str:
    """The MLServer interpreter: ``--mlserver-python``, else bench/.mlserver-venv (created on first use)."""
    if python:
        return python
    interpreter = MLSERVER_VENV / "bin" / "python"
    probe = [str(interpreter), "-c", "import mlserver, mlserver_sklearn, sklearn; print(mlserver.__version__)"]
    if interpreter.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "1.7.1":
        return str(interpreter)
    import sklearn
    import pandas
    import numpy

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
        # The pickle references tollgate.steps.preprocess.categories_as_text: MLServer needs it importable.
        env = {**os.environ, "PYTHONPATH": str(REPO), **ONE_THREAD}
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


def check_answers(name: str, got: list[float], expected: np.ndarray) -> None:
    difference = float(np.max(np.abs(np.asarray(got) - expected)))
    if difference > 1e-9:
        raise SystemExit(f"{name} answers differ from in-process predict_proba by {difference:.3g}; not benchmarking")


def check_tollgate(server, rows, expected) -> None:
    from tollgate.serving.client import predict

    for protocol in ("rest-v1", "rest-v2", "grpc"):
        answer = predict(protocol, server.grpc_url if protocol == "grpc" else server.rest_url, MODEL, rows)
        check_answers(f"Tollgate {protocol}", answer.probabilities, expected)


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
    if len(sys.argv) > 1 and sys.argv[1] == "--grpc-client":
        _grpc_client(*sys.argv[2:7])
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
    parser.add_argument("--output", default=str(HERE / "results" / "serving.json"))
    options = parser.parse_args()
    batches = [int(b) for b in options.batches.split(",")]
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        print("wrk not found: REST rows are skipped. Install it with `apt-get update && apt-get install -y wrk`.")

    import joblib

    from tollgate.serving.model import TollgateModel
    from tollgate.serving.process import ServerProcess

    workdir = Path(tempfile.mkdtemp(prefix="tollgate-bench-serving-"))
    results: list[dict[str, Any]] = []

    def record(server: str, protocol: str, batch: int, measured: dict[str, float]) -> None:
        row = {"server": server, "protocol": protocol, "batch": batch, **measured}
        results.append(row)
        print(f"  {server:<28} {protocol:<8} batch {batch:<4} {row['req_s']:>9.1f} req/s  p50 {row['p50_ms']:7.2f} ms"
              f"  p99 {row['p99_ms']:7.2f} ms" + (f"  ERRORS {row['errors']}" if row.get("errors") else ""), flush=True)

    try:
        print(f"training a {options.family} model on {options.train_rows} built-in rows...", flush=True)
        version_dir, test = build_version(workdir, options.family, options.train_rows)
        schema = json.loads((version_dir / "input_schema.json").read_text())["columns"]
        pipeline = joblib.load(version_dir / "model.joblib")
        served = TollgateModel(MODEL, version_dir)
        served.load()
        print(f"Tollgate prediction path: {served.path_description}")
        samples = {b: test.head(b) for b in batches}
        if any(len(s) < b for b, s in samples.items()):
            raise SystemExit(f"the test split has only {len(test)} complete rows")
        expected = {b: pipeline.predict_proba(s)[:, 1] for b, s in samples.items()}

        print("in-process:")
        for batch, frame in samples.items():
            record("in-process Pipeline", "-", batch, time_in_process(lambda f=frame: pipeline.predict_proba(f),
                                                                      options.duration, options.max_requests))
            columns = served.schema.columns_from_instances(records(frame))
            record("in-process compiled path", "-", batch, time_in_process(
                lambda c=columns, n=len(frame): served.predict_columns(c, n), options.duration, options.max_requests))

        print("Tollgate model server (python -m tollgate.serving):")
        with ServerProcess(version_dir, MODEL, log_path=workdir / "tollgate.log") as server:
            server.wait_ready(120)
            for batch, frame in samples.items():
                rows = records(frame)
                check_tollgate(server, rows, expected[batch])
                bodies = tollgate_bodies(rows, schema)
                connections = options.connections if batch == 1 else 1
                if have_wrk:
                    record("Tollgate", "REST v1", batch, run_wrk(f"{server.rest_url}/v1/models/{MODEL}:predict",
                                                                 bodies["v1"], connections, options.duration, workdir))
                    record("Tollgate", "REST v2", batch, run_wrk(f"{server.rest_url}/v2/models/{MODEL}/infer",
                                                                 bodies["v2"], connections, options.duration, workdir))
                record("Tollgate", "gRPC v2", batch, run_grpc_load(server.grpc_url, bodies["grpc"], connections,
                                                                   options.duration, options.max_requests, workdir))

        if not options.skip_mlserver:
            python = ensure_mlserver(options.mlserver_python)
            print("MLServer 1.7.1 + mlserver-sklearn (same model.joblib, parallel_workers=0):")
            mlserver = MLServerProcess(python, version_dir, workdir)
            try:
                mlserver.wait_ready()
                for batch, frame in samples.items():
                    bodies = mlserver_bodies(records(frame), schema)
                    check_mlserver(mlserver, bodies, expected[batch])
                    connections = options.connections if batch == 1 else 1
                    if have_wrk:
                        record("MLServer 1.7.1", "REST v2", batch, run_wrk(
                            f"{mlserver.rest_url}/v2/models/{MODEL}/infer", bodies["v2"], connections,
                            options.duration, workdir))
                    record("MLServer 1.7.1", "gRPC v2", batch, run_grpc_load(
                        mlserver.grpc_url, bodies["grpc"], connections, options.duration, options.max_requests,
                        workdir))
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


def judge(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compute the ratios behind each target and print them."""
    def find(server: str, protocol: str, batch: int) -> dict[str, Any] | None:
        return next((r for r in results if r["server"] == server and r["protocol"] == protocol and r["batch"] == batch), None)

    verdicts = []
    print("\nratios:")
    for protocol in ("REST v2", "gRPC v2"):
        ours, theirs = find("Tollgate", protocol, 1), find("MLServer 1.7.1", protocol, 1)
        if ours and theirs:
            ratio = ours["req_s"] / theirs["req_s"]
            verdicts.append({"target": f"batch 1 {protocol}: Tollgate req/s >= {TARGET_RATIO_VS_MLSERVER}x MLServer",
                             "value": round(ratio, 2), "met": ratio >= TARGET_RATIO_VS_MLSERVER})
    for protocol in ("REST v1", "REST v2", "gRPC v2"):
        ours = find("Tollgate", protocol, 1)
        if ours:
            tail = ours["p99_ms"] / ours["p50_ms"]
            verdicts.append({"target": f"batch 1 {protocol}: Tollgate p99 <= {TARGET_TAIL}x p50",
                             "value": round(tail, 2), "met": tail <= TARGET_TAIL})
    limit = find("in-process Pipeline", "-", 256)
    compiled = find("in-process compiled path", "-", 256)
    for protocol in ("REST v1", "REST v2", "gRPC v2"):
        ours = find("Tollgate", protocol, 256)
        if ours and limit:
            ratio = ours["p50_ms"] / limit["p50_ms"]
            verdicts.append({"target": f"batch 256 {protocol}: Tollgate p50 <= {TARGET_BATCH_OVERHEAD}x in-process "
                                       "Pipeline.predict_proba", "value": round(ratio, 2),
                             "met": ratio <= TARGET_BATCH_OVERHEAD,
                             "vs_compiled_in_process": round(ours["p50_ms"] / compiled["p50_ms"], 2) if compiled else None})
    for verdict in verdicts:
        extra = (f" (vs in-process compiled path: {verdict['vs_compiled_in_process']}x)"
                 if verdict.get("vs_compiled_in_process") else "")
        print(f"  {'MET ' if verdict['met'] else 'MISSED'}  {verdict['target']}: {verdict['value']}x{extra}")
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
