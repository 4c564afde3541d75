"""Bounded soak of the model server: sustained valid load with some malformed requests mixed in.

    .venv/bin/python bench/soak.py                       # 120 s, 16 REST v2 + 16 gRPC in flight
    .venv/bin/python bench/soak.py --duration 30 --malformed-share 0.2

One ``python -m tollgate.serving`` process on 127.0.0.1 serves a freshly trained default-grid
model. A closed-loop asyncio client keeps ``--rest-connections`` REST v2 requests and
``--grpc-connections`` gRPC calls in flight for ``--duration`` seconds (at most
``--max-requests``). Each valid request carries one row of a pool whose in-process
predictions (the model object's own ``Model.__call__``) are known, and its answer must match
to 1e-12. A share of requests (``--malformed-share``) are malformed, drawn from the fuzz
generators (``tests/fuzz_requests.py``, huge bodies left out): they must get a 4xx /
INVALID_ARGUMENT-class answer. The server's RSS is sampled every second.

Passes when errors = 0 (a failed or wrong valid answer, a malformed one answered >= 500 /
INTERNAL / UNKNOWN) and RSS is flat: the median of the last tenth of the samples is within
``--rss-tolerance`` (5%) of the median of the second tenth (the first is warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

MODEL = "credit-default"


def _bench_serving():
    spec = importlib.util.spec_from_file_location("bench_serving", HERE / "serving.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Counts:
    def __init__(self) -> None:
        self.valid = 0
        self.malformed = 0
        self.errors = 0
        self.wrong = 0
        self.examples: list[str] = []

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.examples) < 10:
            self.examples.append(text[:300])


async def rest_worker(url: str, bodies: list[bytes], expected: list[float], bad: list, share: float,
                      stop: float, budget: list[int], counts: Counts, rng: random.Random) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < stop and budget[0] > 0:
            budget[0] -= 1
            if bad and rng.random() < share:
                case = rng.choice(bad)
                try:
                    response = await client.request(case.method, case.path, content=case.body or None,
                                                    headers=case.headers)
                    if response.status_code >= 500:
                        counts.error(f"malformed {case.kind} -> {response.status_code} {response.text}")
                except httpx.HTTPError as exc:
                    counts.error(f"malformed {case.kind} -> {type(exc).__name__}")
                counts.malformed += 1
                continue
            index = rng.randrange(len(bodies))
            try:
                response = await client.post(f"/v2/models/{MODEL}/infer", content=bodies[index],
                                             headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:
                counts.error(f"REST {type(exc).__name__}: {exc}")
                continue
            counts.valid += 1
            if response.status_code != 200:
                counts.error(f"REST {response.status_code} {response.text}")
                continue
            outputs = {o["name"]: o for o in response.json()["outputs"]}
            if abs(outputs["probability"]["data"][0] - expected[index]) > 1e-12:
                counts.wrong += 1
                counts.error(f"REST wrong answer for row {index}")


async def grpc_worker(target: str, requests: list[bytes], expected: list[float], bad: list, share: float,
                      stop: float, budget: list[int], counts: Counts, rng: random.Random) -> None:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    async with grpc.aio.insecure_channel(target) as channel:
        calls = {}
        while time.monotonic() < stop and budget[0] > 0:
            budget[0] -= 1
            if bad and rng.random() < share:
                case = rng.choice(bad)
                call = calls.setdefault(case.method, channel.unary_unary(case.method))
                try:
                    await call(case.payload, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                                      grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        counts.error(f"malformed {case.kind} -> {exc.code().name} {exc.details()}")
                counts.malformed += 1
                continue
            index = rng.randrange(len(requests))
            call = calls.setdefault("infer", channel.unary_unary("/inference.GRPCInferenceService/ModelInfer"))
            try:
                raw = await call(requests[index], timeout=30)
            except grpc.aio.AioRpcError as exc:
                counts.valid += 1
                counts.error(f"gRPC {exc.code().name} {exc.details()}")
                continue
            counts.valid += 1
            answer = pb.ModelInferResponse.FromString(raw)
            probability = next(o for o in answer.outputs if o.name == "probability").contents.fp64_contents[0]
            if abs(probability - expected[index]) > 1e-12:
                counts.wrong += 1
                counts.error(f"gRPC wrong answer for row {index}")


def main() -> int:
    from tollgate.serving import import_kserve_with_bare_argv

    import_kserve_with_bare_argv()  # kserve would read this script's flags on import (see tollgate.serving)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="Seconds of load.")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="Requests in all, at most.")
    parser.add_argument("--rest-connections", type=int, default=16)
    parser.add_argument("--grpc-connections", type=int, default=16)
    parser.add_argument("--malformed-share", type=float, default=0.1)
    parser.add_argument("--rss-tolerance", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--train-rows", type=int, default=5_000)
    parser.add_argument("--output", default=str(HERE / "results" / "soak.json"))
    options = parser.parse_args()

    import httpx
    import psutil
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    from tests.fuzz_requests import Baseline, generate_grpc, generate_rest
    from tollgate.serving.model import TollgateModel
    from tollgate.serving.process import ServerProcess

    workdir = Path(tempfile.mkdtemp(prefix="tollgate-soak-"))
    version_dir, test_frame = _bench_serving().build_version(workdir, "hist_gradient_boosting", options.train_rows)
    rows = json.loads(test_frame.head(100).to_json(orient="records"))
    model = TollgateModel(MODEL, version_dir)
    model.load()
    answer, _ = asyncio.run(model({"instances": rows}))
    expected = [p["probability"] for p in answer["predictions"]]

    with ServerProcess(version_dir, MODEL, log_path=workdir / "server.log") as server:
        server.wait_ready(timeout=120)
        metadata = httpx.get(f"{server.rest_url}/v2/models/{MODEL}").json()
        base = Baseline(MODEL, metadata["inputs"], rows, metadata["versions"][0])
        bodies = [json.dumps({"inputs": base.columns([row])}).encode() for row in rows]
        grpc_requests = [pb.ModelInferRequest(model_name=MODEL, inputs=[
            pb.ModelInferRequest.InferInputTensor(name=t["name"], datatype="BYTES", shape=[1],
                                                  contents=pb.InferTensorContents(bytes_contents=[t["data"][0].encode()]))
            for t in base.columns([row])]).SerializeToString() for row in rows]
        bad_rest = [c for c in generate_rest(base, 2000, options.seed, 1024) if c.kind != "huge"]
        bad_grpc = list(generate_grpc(base, 1000, options.seed))

        process = psutil.Process(server.process.pid)
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not done.wait(1.0):
                samples.append((round(time.monotonic() - start, 1), process.memory_info().rss / 2**20))

        sampler = threading.Thread(target=sample, daemon=True)
        counts = Counts()
        budget = [options.max_requests]
        rng = random.Random(options.seed)

        async def load() -> None:
            stop = time.monotonic() + options.duration
            workers = [rest_worker(server.rest_url, bodies, expected, bad_rest, options.malformed_share, stop,
                                   budget, counts, random.Random(rng.random()))
                       for _ in range(options.rest_connections)]
            workers += [grpc_worker(server.grpc_url, grpc_requests, expected, bad_grpc, options.malformed_share,
                                    stop, budget, counts, random.Random(rng.random()))
                        for _ in range(options.grpc_connections)]
            await asyncio.gather(*workers)

        sampler.start()
        started = time.monotonic()
        asyncio.run(load())
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
        healthy = httpx.get(f"{server.rest_url}/v2/health/ready").status_code == 200 and server.alive()
        log_bytes = server.log_path.stat().st_size

    rss = [value for _, value in samples]
    tenth = max(1, len(rss) // 10)
    early = statistics.median(rss[tenth:2 * tenth]) if len(rss) >= 3 * tenth else rss[0]
    late = statistics.median(rss[-tenth:])
    growth = (late - early) / early
    results = {
        "command": " ".join(["bench/soak.py"] + sys.argv[1:]),
        "seconds": round(elapsed, 1), "valid_requests": counts.valid, "malformed_requests": counts.malformed,
        "requests_per_second": round((counts.valid + counts.malformed) / elapsed, 1),
        "errors": counts.errors, "wrong_answers": counts.wrong, "error_examples": counts.examples,
        "rss_mib": {"early_median": round(early, 1), "late_median": round(late, 1), "max": round(max(rss), 1),
                    "growth": round(growth, 4)},
        "healthy_after": healthy, "log_bytes": log_bytes, "rss_samples": samples,
    }
    problems = []
    if counts.errors or counts.wrong:
        problems.append(f"{counts.errors} errors ({counts.wrong} wrong answers)")
    if growth > options.rss_tolerance:
        problems.append(f"RSS grew {growth:.1%} (tolerance {options.rss_tolerance:.0%})")
    if not healthy:
        problems.append("not healthy afterwards")
    results["verdict"] = "pass" if not problems else "FAIL: " + "; ".join(problems)
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "rss_samples"}, indent=2))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
