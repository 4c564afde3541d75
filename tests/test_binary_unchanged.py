"""Multiclass support changes nothing for binary users: a binary run's summary and the served answers
have exactly the shape they had before it (keys, value types, output names, datatypes and shapes).

``tests/data/binary_shapes.json`` was written by :func:`collect_shapes` (on :func:`run_default`) on the
commit before multiclass support, named in its ``"generated_by"`` entry; this test collects the same
shapes from today's code (the session's default run) and requires them to be equal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.pipeline

GOLDEN = Path(__file__).parent / "data" / "binary_shapes.json"
MODEL = "credit-default"
ENVELOPE = {"record", "record_version"}
# Keys whose *set* depends on timing or data, not on the code's output format.
_OPEN_KEYS = {"latency_ms"}


def shape(value: Any, key: str = "") -> Any:
    """The structure of a JSON value: dict keys (sorted) with their shapes, a list's element shape,
    and the type name of scalars (ints and floats are both "number": a metric may be 1 or 0.93)."""
    if isinstance(value, dict):
        if key in _OPEN_KEYS:
            return "dict"
        return {k: shape(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0], key)] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def _records(frame) -> list[dict]:
    def plain(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def run_default(root: Path) -> tuple[dict[str, Any], Path]:
    """Run the default binary pipeline (small grid, 3,000 rows): its summary and registered version
    (what the session fixture ``trained_run`` gives; used to write the golden file on the old code)."""
    from tests.conftest import make_config, run_pipeline
    from tollgate.registry import open_registry

    config = make_config(root)
    outcome, summary = run_pipeline(config)
    assert outcome.succeeded, outcome.error
    return summary, Path(open_registry(config.registry.uri).resolve(MODEL, "production").uri)


def collect_shapes(summary: dict[str, Any], version_dir: Path, root: Path) -> dict[str, Any]:
    """The shapes of a binary run's summary and files, and of the answers when its version is served."""
    import grpc
    import httpx
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    from tollgate.data.builtin import generate_applicants
    from tollgate.serving.process import ServerProcess
    schema = json.loads((version_dir / "input_schema.json").read_text())
    names = [c["name"] for c in schema["columns"]]
    rows = _records(generate_applicants(rows=3, seed=11)[names])
    with ServerProcess(version_dir, MODEL, log_path=root / "server.log") as server:
        server.wait_ready(timeout=60)
        v1 = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json={"instances": rows}).json()
        inputs = [{"name": n, "shape": [3], "datatype": "BYTES", "data": [_text(r[n]) for r in rows]} for n in names]
        v2 = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json={"inputs": inputs}).json()
        metadata = httpx.get(f"{server.rest_url}/v2/models/{MODEL}").json()
        request = pb.ModelInferRequest(model_name=MODEL, inputs=[pb.ModelInferRequest.InferInputTensor(
            name=n, datatype="BYTES", shape=[3],
            contents=pb.InferTensorContents(bytes_contents=[_text(r[n]).encode() for r in rows])) for n in names])
        with grpc.insecure_channel(server.grpc_url) as channel:
            answer = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    grpc_outputs = [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape),
                     "parameters": sorted(o.parameters)} for o in answer.outputs]
    return {
        "summary": shape(summary),
        "input_schema": shape(schema),
        # The record envelope ("record", "record_version") was added on purpose after the golden file
        # was written (metadata.json became a versioned record); every other key is as it was.
        "metadata_keys": sorted(set(json.loads((version_dir / "metadata.json").read_text())) - ENVELOPE),
        "metadata_features": sorted(json.loads((version_dir / "metadata.json").read_text())["features"]),
        "v1": shape(v1),
        "v2": shape(v2),
        "v2_outputs": [{"name": o["name"], "datatype": o["datatype"], "shape": o["shape"]} for o in v2["outputs"]],
        "v2_metadata": metadata | {"name": "model", "inputs": [shape(i) for i in metadata["inputs"]][:1]},
        "grpc_outputs": grpc_outputs,
        "grpc_parameters": sorted(answer.parameters),
    }


def test_binary_run_and_answers_have_the_shape_they_had_before_multiclass(trained_run, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    golden.pop("generated_by")
    summary, version_dir = trained_run
    assert collect_shapes(summary, version_dir, tmp_path) == golden
    stored = json.loads((version_dir / "metadata.json").read_text())
    assert (stored["record"], stored["record_version"]) == ("version_metadata", 1)
