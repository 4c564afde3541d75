"""A 3-class target end to end: the whole DAG through the real CLI and kfp.local, twice (the second
run is compared with the first's champion), then the registered version served over REST v1, v2 and
gRPC by the real model server, whose answers must equal in-process onnxruntime on the same bytes.

Config only: the built-in generator's 3-class ``risk_band`` target; thresholds from ``gate.multiclass``.
"""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import SMALL_CANDIDATES
from tollgate.serving.runtime import OnnxModel

pytestmark = pytest.mark.pipeline

MODEL = "risk-band"
CLASSES = ["high", "low", "medium"]  # sorted text: the class order fixed at training


def tollgate(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "tollgate.cli", *args], capture_output=True, text=True,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"tollgate {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiclass")
    config = {
        "model_name": MODEL,
        "registry": {"uri": str(root / "registry")},
        "run": {"root": str(root / "runs")},
        "data": {"target": "risk_band", "builtin": {"rows": 1500, "classes": 3}},
        "train": {"candidates": SMALL_CANDIDATES},
        # Reported one-vs-rest for 'high'; not bounded (random data must not make the run flaky).
        "fairness": {"sensitive_attributes": [{"column": "gender"}], "classes": ["high"]},
        "gate": {"fairness": {"min_disparate_impact": None, "max_equal_opportunity_difference": None}},
    }
    path = root / "tollgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return {"root": root, "config": str(path), "registry": root / "registry"}


@pytest.fixture(scope="module")
def first_run(workspace):
    return json.loads(tollgate("run", "--config", workspace["config"], "--json").stdout)


# Run 2 trains a single-split forest: clearly worse than run 1's champion on both change metrics,
# and above a lenient absolute bound, so the verdict is known before the run (blocked by exactly the
# two change rules) and the test cannot pass on either branch.
STUMP = [{"name": "stump", "family": "random_forest", "params": {"n_estimators": 1, "max_depth": 1}}]
LENIENT_ABSOLUTE = {"roc_auc_ovr_macro": {"min": 0.5}}
CLEARLY = 0.05  # far beyond the change tolerances (0.005, 0.01)


@pytest.fixture(scope="module")
def second_run(workspace, first_run):
    other = yaml.safe_load(Path(workspace["config"]).read_text())
    other["train"]["candidates"] = STUMP
    other["gate"]["multiclass"] = {"absolute": LENIENT_ABSOLUTE}  # max_degradation: the defaults
    del other["data"]  # the same table, asked for on the command line this time
    path = workspace["root"] / "second.yaml"
    path.write_text(yaml.safe_dump(other))
    return json.loads(tollgate("run", "--config", str(path), "--rows", "1500", "--classes", "3", "--json").stdout)


def test_first_run_trains_gates_and_registers_a_multiclass_model(first_run, workspace):
    assert first_run["succeeded"], first_run.get("error")
    assert first_run["gate"]["passed"] and first_run["registered_version"] == 1
    candidate = first_run["candidate"]
    assert candidate["task"] == "multiclass" and candidate["classes"] == CLASSES
    assert candidate["selection_metric"] == "roc_auc_ovr_macro"
    metrics = candidate["test_metrics"]
    assert set(metrics) == {"accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr_macro", "roc_auc_ovr_weighted",
                            "precision_macro", "recall_macro", "log_loss"}
    assert [row["class"] for row in candidate["per_class"]] == CLASSES
    matrix = np.array(candidate["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 300  # 20% of 1,500 rows
    assert [rule["metric"] for rule in first_run["gate"]["rules"]] == ["roc_auc_ovr_macro"]
    assert "gender (class high)" in candidate["fairness"]
    # The printed JSON reads back as the typed summary it was written from, multiclass keys included.
    from tollgate.summary import RunSummary

    assert RunSummary.from_dict(first_run).to_dict() == first_run

    version_dir = workspace["registry"] / MODEL / "v1"
    schema = json.loads((version_dir / "input_schema.json").read_text())
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert schema["task"] == "multiclass" and schema["classes"] == CLASSES
    assert metadata["features"]["classes"] == CLASSES and metadata["task"] == "multiclass"
    assert metadata["test_metrics"] == metrics
    # The gate's numbers are the served bytes' numbers.
    from tollgate.artifacts import read_frame
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.evaluate import multiclass_metrics

    test_split = read_frame(next(Path(first_run["run_dir"]).glob("**/preprocess/test")))
    proba = OnnxModel.from_file(version_dir / "model.onnx", schema).predict_proba(test_split)
    assert proba.shape == (300, 3)
    assert multiclass_metrics(test_split["__label__"].to_numpy(), proba) == metrics
    infra = first_run["infra_validation"]
    assert infra["passed"] and infra["max_abs_difference"] == {"rest-v2": 0.0, "grpc": 0.0}
    assert infra["sklearn_agreement"]["max_abs_difference"] <= 1e-5
    # KFP's ClassificationMetrics carries the k x k matrix with the class names.
    executor = json.loads(next(Path(first_run["run_dir"]).glob("**/evaluate/executor_output.json")).read_text())
    logged = executor["artifacts"]["classification"]["artifacts"][0]["metadata"]["confusionMatrix"]
    assert [spec["displayName"] for spec in logged["annotationSpecs"]] == CLASSES
    assert [row["row"] for row in logged["rows"]] == candidate["confusion_matrix"]
    report = Path(first_run["report"]).read_text()
    assert "Precision-recall per class" in report or "precision-recall per class" in report
    assert "ROC AUC (one-vs-rest)" in report


def test_second_run_is_blocked_by_the_champion_comparison(first_run, second_run, workspace):
    assert second_run["succeeded"], second_run.get("error")
    champion = second_run["champion"]
    assert champion["version"] == 1
    assert champion["metrics"] == pytest.approx(first_run["candidate"]["test_metrics"])
    challenger = second_run["candidate"]["test_metrics"]
    champion_metrics = champion["metrics"]
    for metric in ("f1_macro", "roc_auc_ovr_macro"):
        assert challenger[metric] < champion_metrics[metric] - CLEARLY, metric
    assert challenger["roc_auc_ovr_macro"] >= LENIENT_ABSOLUTE["roc_auc_ovr_macro"]["min"]
    expected = [f"{metric} {challenger[metric]:.4f} is {champion_metrics[metric] - challenger[metric]:.4f} worse "
                f"than champion v1 ({champion_metrics[metric]:.4f}); tolerance {tolerance:g}"
                for metric, tolerance in (("f1_macro", 0.01), ("roc_auc_ovr_macro", 0.005))]
    assert second_run["gate"]["passed"] is False
    assert second_run["gate"]["reasons"] == expected
    assert [(r["metric"], r["passed"]) for r in second_run["gate"]["rules"]] == [
        ("roc_auc_ovr_macro", True), ("f1_macro", False), ("roc_auc_ovr_macro", False)]
    assert "registered_version" not in second_run
    assert {step["step"] for step in second_run["steps"]}.isdisjoint({"infra-validate", "register", "deploy"})
    from tollgate.registry import open_registry

    assert open_registry(str(workspace["registry"])).resolve(MODEL, "production").version == 1


def _records(frame: pd.DataFrame) -> list[dict]:
    def plain(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture(scope="module")
def served(workspace, second_run, tmp_path_factory):
    from tollgate.registry import open_registry
    from tollgate.serving.process import ServerProcess

    version = open_registry(str(workspace["registry"])).resolve(MODEL, "production")
    root = tmp_path_factory.mktemp("mc-server")
    workspace["prediction_log"] = root / "predictions"
    with ServerProcess(Path(version.uri), MODEL, log_path=root / "server.log",
                       extra_args=["--log-uri", str(workspace["prediction_log"]), "--log-flush-seconds", "0.2"]
                       ) as process:
        process.wait_ready(timeout=60)
        yield process, Path(version.uri)


@pytest.mark.parametrize("protocol", ["rest-v1", "rest-v2", "grpc"])
def test_served_answers_equal_in_process_onnxruntime(served, protocol):
    from tollgate.data.builtin import generate_applicants
    from tollgate.serving.client import predict
    from tollgate.serving.runtime import OnnxModel

    server, version_dir = served
    schema = json.loads((version_dir / "input_schema.json").read_text())
    names = [c["name"] for c in schema["columns"]]
    sample = generate_applicants(rows=40, seed=99, classes=3)[names]
    expected = OnnxModel.from_file(version_dir / "model.onnx", schema).predict_proba(sample).astype(np.float64)
    url = server.grpc_url if protocol == "grpc" else server.rest_url
    answer = predict(protocol, url, MODEL, _records(sample))
    np.testing.assert_array_equal(np.asarray(answer.class_probabilities), expected)
    assert answer.classes == [CLASSES[i] for i in expected.argmax(axis=1)]
    assert answer.probabilities == pytest.approx(expected.max(axis=1).tolist(), abs=0)
    assert answer.class_order == CLASSES  # v1 keys, v2/gRPC the probabilities tensor's parameter


def test_v1_and_v2_answer_shapes_and_metadata_list_the_class_order(served):
    server, version_dir = served
    schema = json.loads((version_dir / "input_schema.json").read_text())
    row = {c["name"]: (0 if c["role"] == "numeric" else (c.get("categories") or ["x"])[0]) for c in schema["columns"]}
    v1 = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json={"instances": [row, row]}).json()
    prediction = v1["predictions"][0]
    assert set(prediction) == {"predicted_class", "probabilities"}
    assert list(prediction["probabilities"]) == CLASSES
    assert prediction["predicted_class"] == max(CLASSES, key=lambda c: prediction["probabilities"][c])

    inputs = [{"name": k, "shape": [1], "datatype": "FP64" if isinstance(v, (int, float)) else "BYTES", "data": [v]}
              for k, v in row.items()]
    v2 = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json={"inputs": inputs}).json()
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert set(outputs) == {"predicted_class", "probabilities"}
    assert outputs["probabilities"]["shape"] == [1, 3] and outputs["predicted_class"]["datatype"] == "BYTES"

    metadata = httpx.get(f"{server.rest_url}/v2/models/{MODEL}").json()
    assert metadata["parameters"] == {"task": "multiclass", "classes": CLASSES}
    assert {o["name"]: o["shape"] for o in metadata["outputs"]} == {"predicted_class": [-1], "probabilities": [-1, 3]}
    assert [i["name"] for i in metadata["inputs"]] == [c["name"] for c in schema["columns"]]

    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    with grpc.insecure_channel(server.grpc_url) as channel:
        grpc_metadata = GRPCInferenceServiceStub(channel).ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=10)
    assert {o.name: list(o.shape) for o in grpc_metadata.outputs} == {"predicted_class": [-1], "probabilities": [-1, 3]}


def test_predict_cli_prints_class_and_its_probability(served, tmp_path):
    from tollgate.data.builtin import generate_applicants

    server, version_dir = served
    schema = json.loads((version_dir / "input_schema.json").read_text())
    names = [c["name"] for c in schema["columns"]]
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(_records(generate_applicants(rows=3, seed=5, classes=3)[names])))
    printed = tollgate("predict", "--file", str(rows), "--url", server.rest_url, "--model-name", MODEL,
                       "--protocol", "rest-v1", "--json")
    predictions = json.loads(printed.stdout)["predictions"]
    sample = pd.DataFrame(json.loads(rows.read_text()))
    expected = OnnxModel.from_file(version_dir / "model.onnx", schema).predict_proba(sample).astype(np.float64)
    assert [p["predicted_class"] for p in predictions] == [CLASSES[i] for i in expected.argmax(axis=1)]
    assert [p["probability"] for p in predictions] == pytest.approx(expected.max(axis=1).tolist(), abs=1e-12)
    table = tollgate("predict", "--file", str(rows), "--url", server.rest_url, "--model-name", MODEL).stdout
    assert "probability of that class" in table
    assert all(f"{p:.4f}" in table for p in expected.max(axis=1))


def test_monitor_measures_input_drift_and_says_output_measures_are_binary_only(served, workspace, tmp_path):
    from tollgate.data.builtin import generate_applicants
    from tollgate.serving.client import column_inputs

    server, version_dir = served
    schema = json.loads((version_dir / "input_schema.json").read_text())
    names = [c["name"] for c in schema["columns"]]
    sample = generate_applicants(rows=60, seed=7, classes=3)
    inputs = [{"name": t.name, "shape": t.shape, "datatype": t.datatype, "data": t.data}
              for t in column_inputs(_records(sample[names]), for_grpc=False)]
    sent_at = time.time()
    answer = httpx.post(f"{server.rest_url}/v2/models/{MODEL}/infer", json={"id": "mc-monitor", "inputs": inputs})
    assert answer.status_code == 200, answer.text
    # The server writes its log every 0.2 s here, a file at a time (renamed into place when whole).
    deadline = time.monotonic() + 30
    while not any(f.stat().st_mtime >= sent_at for f in workspace["prediction_log"].rglob("*") if f.is_file()):
        assert time.monotonic() < deadline, "the server wrote no prediction log file within 30 s"
        time.sleep(0.1)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": "mc-monitor", "row": range(60), "label": sample["risk_band"]}).to_csv(labels,
                                                                                                       index=False)
    result = tollgate("monitor", "--log-uri", str(workspace["prediction_log"]), "--registry",
                      str(workspace["registry"]), "--model-name", MODEL, "--labels", str(labels),
                      "--html", str(tmp_path / "monitor.html"), "--json", check=False)
    assert result.returncode in (0, 3), result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] >= 60 and len(report["drift"]) == len(names)  # every input column is measured
    assert report["prediction_drift"] is None and report["realized"] == []
    assert ("v1 answers with per-class probabilities (multiclass): output drift and realized metrics are "
            "measured for binary models only") in report["notes"]
    # Every protocol's answers are logged alike: the class probabilities as a list in class order.
    from tollgate.serving.predlog import read_log

    log = read_log(str(workspace["prediction_log"]), MODEL)
    answered = log[log["error"].isna()]
    assert {"v1-rest", "v2-rest", "v2-grpc"} <= set(answered["protocol"]), set(answered["protocol"])
    for protocol, rows in answered.groupby("protocol"):
        probabilities = np.stack(rows["output.probabilities"].to_list())
        assert probabilities.shape == (len(rows), 3), protocol
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
        assert rows["output.predicted_class"].tolist() == [CLASSES[i] for i in probabilities.argmax(axis=1)]
