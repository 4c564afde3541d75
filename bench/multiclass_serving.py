"""What a multiclass answer costs the model server, against a binary one, in the same run.

Trains the same family (HistGradientBoosting, as the default grid's) on the built-in table with 2,
3 and 5 classes (``data.builtin.classes``) exactly as the train task does (ONNX export included),
loads each ``model.onnx`` in ``TollgateModel`` and times the server's own request path in process
(``preprocess`` + ``predict``: schema casts, the graph, the answer) for v1 JSON and v2
``InferRequest`` bodies at batch 1 and 256, and the graph alone on ready feeds (``graph``: a
k-class HistGradientBoosting has k trees per iteration). Bounded: a fixed number of calls per
row. Prints median microseconds per call and the ratio of each multiclass model to the binary one.

    .venv/bin/python bench/multiclass_serving.py [--rows 5000] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path


def _plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _records(frame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _model(classes: int, rows: int, directory: Path):
    from tollgate.data.builtin import generate_applicants
    from tollgate.registry import ONNX_FILE, SCHEMA_FILE
    from tollgate.serving.model import TollgateModel
    from tollgate.steps.candidates import CandidateSpec
    from tollgate.steps.preprocess import build_feature_spec, split_dataset
    from tollgate.steps.train import train_candidate

    frame = generate_applicants(rows=rows, seed=7, classes=classes)
    target = "defaulted" if classes == 2 else "risk_band"
    spec = build_feature_spec(frame, target, 1, ["applicant_id"], "application_date")
    splits = split_dataset(frame, spec, 0.2, 0.2, 42)
    trained = train_candidate(splits.train, splits.validation,
                              CandidateSpec("hgb", "hist_gradient_boosting",
                                            {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31,
                                             "early_stopping": False, "random_state": 0}), spec)
    directory.mkdir(parents=True)
    (directory / ONNX_FILE).write_bytes(trained.onnx)
    (directory / SCHEMA_FILE).write_text(json.dumps(spec.schema))
    model = TollgateModel(f"m{classes}", directory)
    model.load()
    return model, splits.test[spec.columns]


def _v2_request(model, sample):
    from kserve.protocol.infer_type import InferRequest

    from tollgate.serving.client import column_inputs

    return InferRequest(model_name=model.name, infer_inputs=column_inputs(_records(sample), for_grpc=False))


def _answer(model, payload):
    return model.predict(model.preprocess(payload))


def _time(call, calls: int) -> float:
    for _ in range(min(50, calls)):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def main() -> None:
    from tollgate.serving import import_kserve_with_bare_argv

    import_kserve_with_bare_argv()  # kserve would read this script's flags on import (see tollgate.serving)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="Built-in rows each model trains on.")
    parser.add_argument("--calls", type=int, default=2000, help="Timed calls per batch-1 row (batch 256: a tenth).")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for classes in (2, 3, 5):
            model, test = _model(classes, args.rows, Path(tmp) / f"k{classes}")
            for batch in (1, 256):
                sample = test.head(batch)
                records = _records(sample)
                request = _v2_request(model, sample)
                calls = args.calls if batch == 1 else max(1, args.calls // 10)
                body = {"instances": records}
                feeds = model.schema.model_feeds(model.preprocess(body).columns)
                results[(classes, batch, "v1")] = _time(partial(_answer, model, body), calls)
                results[(classes, batch, "v2")] = _time(partial(_answer, model, request), calls)
                results[(classes, batch, "graph")] = _time(partial(model.graph.run, feeds), calls)
    print(f"{'classes':>7} {'batch':>5} {'path':>5} {'median us':>10} {'vs binary':>9} {'minus graph':>11}")
    for (classes, batch, path), micros in results.items():
        ratio = micros / results[(2, batch, path)]
        rest = "" if path == "graph" else f"{micros - results[(classes, batch, 'graph')]:.1f}"
        print(f"{classes:>7} {batch:>5} {path:>5} {micros:>10.1f} {ratio:>9.2f} {rest:>11}")


if __name__ == "__main__":
    main()
