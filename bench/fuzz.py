"""Fuzz the model server at full count: malformed REST and gRPC requests plus schemathesis.

    .venv/bin/python bench/fuzz.py                      # 12,000 REST + 8,000 gRPC + schemathesis
    .venv/bin/python bench/fuzz.py --rest 3000 --grpc 2000 --schemathesis-examples 20

One ``python -m tollgate.serving`` process on 127.0.0.1 (the serving image's entry point)
serves a freshly trained default-grid model. Then, in turn and bounded by the counts:

* the seeded REST generator of ``tests/fuzz_requests.py`` (truncated / duplicate-key / deep
  JSON, wrong types, non-finite numbers, huge bodies and batches, the binary extension with
  wrong sizes and encodings, negative and mismatched shapes, wrong content types, model and
  version names, v1 bodies, byte flips);
* its gRPC generator (wrong datatypes and contents, raw contents of the wrong length or
  prefix, shapes, missing inputs, non-finite numbers, names, undecodable bytes, every RPC);
* schemathesis 4 against the server's ``/openapi.json`` (check ``not_a_server_error``).

Passes when no REST answer is >= 500 (or missing), no gRPC answer is INTERNAL / UNKNOWN /
UNAVAILABLE, schemathesis reports no failure, and afterwards health is green and a valid
request over REST v1, REST v2 and gRPC equals the model's in-process predictions. It also
reports the server's memory and log growth. The test suite runs a small seeded sample of the
same generators (``tests/test_serving_fuzz.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

MODEL = "credit-default"


def _bench_serving():
    """``bench/serving.py`` as a module: the same model the serving benchmark trains."""
    spec = importlib.util.spec_from_file_location("bench_serving", HERE / "serving.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def run_schemathesis(url: str, examples: int, seed: int, workdir: Path) -> dict:
    config = workdir / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.model_name" = "{MODEL}"\n')
    report = workdir / "schemathesis.json"
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run",
               f"{url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", str(examples),
               "--seed", str(seed), "--no-shrink", "--request-timeout", "30",
               "--report", "json", "--report-json-path", str(report)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=workdir)
    if not report.is_file():
        raise SystemExit(f"schemathesis did not run:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    summary = json.loads(report.read_text())
    return {"cases": summary["test_cases"]["generated"], "failures": len(summary["failures"]),
            "errors": len(summary["errors"]), "exit_code": summary["exit_code"],
            "seconds": round(time.monotonic() - started, 1), "failure_detail": summary["failures"][:5]}


def main() -> int:
    from tollgate.serving import import_kserve_with_bare_argv

    import_kserve_with_bare_argv()  # kserve would read this script's flags on import (see tollgate.serving)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rest", type=int, default=12_000, help="Malformed REST requests to send.")
    parser.add_argument("--grpc", type=int, default=8_000, help="Malformed gRPC calls to send.")
    parser.add_argument("--schemathesis-examples", type=int, default=150,
                        help="schemathesis --max-examples per operation (0 to skip).")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--max-batch", type=int, default=1024, help="The server's --max-batch.")
    parser.add_argument("--train-rows", type=int, default=5_000)
    parser.add_argument("--time-limit", type=float, default=1800, help="Seconds for the whole run, at most.")
    parser.add_argument("--output", default=str(HERE / "results" / "fuzz.json"))
    options = parser.parse_args()

    import httpx
    import numpy as np

    from tests.fuzz_requests import Baseline, Tally, generate_grpc, generate_rest, send_grpc, send_rest
    from tollgate.serving.client import predict
    from tollgate.serving.model import TollgateModel
    from tollgate.serving.process import ServerProcess

    deadline = time.monotonic() + options.time_limit
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-fuzz-"))
    version_dir, test_frame = _bench_serving().build_version(workdir, "hist_gradient_boosting", options.train_rows)
    results: dict = {"command": " ".join(["bench/fuzz.py"] + sys.argv[1:]), "seed": options.seed}
    with ServerProcess(version_dir, MODEL, max_batch=options.max_batch, log_path=workdir / "server.log") as server:
        server.wait_ready(timeout=120)
        metadata = httpx.get(f"{server.rest_url}/v2/models/{MODEL}").json()
        rows = json.loads(test_frame.head(200).to_json(orient="records"))
        base = Baseline(MODEL, metadata["inputs"], rows, metadata["versions"][0])
        rss_start = rss_mib(server.process.pid)

        started = time.monotonic()
        rest = send_rest(server.rest_url, generate_rest(base, options.rest, options.seed, options.max_batch), Tally(),
                         deadline=deadline)
        results["rest"] = {"sent": rest.sent, "failed": rest.failed, "statuses": dict(rest.by_status),
                           "seconds": round(time.monotonic() - started, 1), "first_failures": rest.failures[:10]}
        print(f"REST: {rest.sent} sent, {rest.failed} failed, {dict(rest.by_status)}", flush=True)

        started = time.monotonic()
        calls = send_grpc(server.grpc_url, generate_grpc(base, options.grpc, options.seed), Tally(), deadline=deadline)
        results["grpc"] = {"sent": calls.sent, "failed": calls.failed, "statuses": dict(calls.by_status),
                           "seconds": round(time.monotonic() - started, 1), "first_failures": calls.failures[:10]}
        print(f"gRPC: {calls.sent} sent, {calls.failed} failed, {dict(calls.by_status)}", flush=True)

        if options.schemathesis_examples:
            results["schemathesis"] = run_schemathesis(server.rest_url, options.schemathesis_examples, options.seed,
                                                       workdir)
            print(f"schemathesis: {results['schemathesis']}", flush=True)

        # Afterwards: healthy, and still exactly the model.
        health = {path: httpx.get(server.rest_url + path).status_code
                  for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready")}
        model = TollgateModel(MODEL, version_dir)
        model.load()
        sample = rows[:50]
        answer, _ = asyncio.run(model({"instances": sample}))
        expected = [p["probability"] for p in answer["predictions"]]
        differences = {}
        for protocol in ("rest-v1", "rest-v2", "grpc"):
            got = predict(protocol, server.grpc_url if protocol == "grpc" else server.rest_url, MODEL, sample)
            differences[protocol] = float(np.max(np.abs(np.array(got.probabilities) - np.array(expected))))
        results["after"] = {"health": health, "max_abs_difference_vs_in_process": differences,
                            "alive": server.alive(), "rss_mib_start": round(rss_start, 1),
                            "rss_mib_end": round(rss_mib(server.process.pid), 1),
                            "log_bytes": server.log_path.stat().st_size,
                            "log_tracebacks": server.log_path.read_text(errors="replace").count("Traceback")}
    sent = results["rest"]["sent"] + results["grpc"]["sent"] + results.get("schemathesis", {}).get("cases", 0)
    results["total_requests"] = sent
    problems = []
    if results["rest"]["failed"]:
        problems.append(f"{results['rest']['failed']} REST answers >= 500 or missing")
    if results["grpc"]["failed"]:
        problems.append(f"{results['grpc']['failed']} gRPC answers INTERNAL/UNKNOWN/UNAVAILABLE")
    if results.get("schemathesis", {}).get("failures") or results.get("schemathesis", {}).get("errors"):
        problems.append("schemathesis found failures")
    if any(code != 200 for code in results["after"]["health"].values()) or not results["after"]["alive"]:
        problems.append(f"not healthy afterwards: {results['after']['health']}")
    if any(d > 1e-12 for d in differences.values()):
        problems.append(f"answers differ from in-process predictions: {differences}")
    results["verdict"] = "pass" if not problems else "FAIL: " + "; ".join(problems)
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({k: v for k, v in results.items() if k not in ("rest", "grpc")}, indent=2, default=str))
    print(f"{sent} requests in all; verdict: {results['verdict']} (details in {output})")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
