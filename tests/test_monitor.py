"""`tollgate monitor` on a real server's prediction log (issue 15): drift, exit codes, late labels."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from tollgate.cli import app
from tollgate.config import load_config
from tollgate.data.builtin import generate_applicants
from tollgate.registry import open_registry
from tollgate.serving.client import column_inputs
from tollgate.serving.process import ServerProcess
from tollgate.serving.runtime import OnnxModel
from tollgate.steps.monitor import DRIFT_EXIT_CODE
from tollgate.steps.validate import feature_drift

MODEL = "credit-default"
BATCH = 25


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _send(server: ServerProcess, frame: pd.DataFrame, columns: list[str], prefix: str) -> list[tuple[str, int, int]]:
    """Send ``frame`` in batches; returns (request_id, row, label) for each row."""
    sent = []
    rows = [{k: _plain(v) for k, v in r.items()} for r in frame[columns].to_dict("records")]
    labels = frame["defaulted"].tolist()
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(rows), BATCH):
            batch = rows[start:start + BATCH]
            inputs = [{"name": t.name, "shape": t.shape, "datatype": t.datatype, "data": t.data}
                      for t in column_inputs(batch, for_grpc=False)]
            request_id = f"{prefix}-{start}"
            answer = client.post(f"{server.rest_url}/v2/models/{MODEL}/infer",
                                 json={"id": request_id, "inputs": inputs})
            assert answer.status_code == 200, answer.text
            sent += [(request_id, i, int(labels[start + i])) for i in range(len(batch))]
    return sent


@pytest.fixture(scope="module")
def traffic(trained_model_dir, tmp_path_factory):
    """One real server with the log on: in-distribution traffic, then traffic with the generator's drift at 1."""
    root = tmp_path_factory.mktemp("monitor")
    columns = [c["name"] for c in json.loads((trained_model_dir / "input_schema.json").read_text())["columns"]]
    steady = generate_applicants(rows=1000, seed=4242)
    shifted = generate_applicants(rows=1000, seed=4343, drift=1.0)
    with ServerProcess(trained_model_dir, MODEL, log_path=root / "server.log",
                       extra_args=["--log-uri", str(root / "log"), "--no-grpc"]) as server:
        server._grpc_ready = lambda: True
        server.wait_ready(timeout=60)
        start = datetime.now(UTC)
        sent = _send(server, steady, columns, "steady")
        time.sleep(0.05)
        middle = datetime.now(UTC)
        time.sleep(0.05)
        _send(server, shifted, columns, "shifted")
        end = datetime.now(UTC) + timedelta(seconds=1)
    registry = trained_model_dir.parent.parent
    return {"root": root, "log": root / "log", "registry": registry, "start": start, "middle": middle, "end": end,
            "steady": steady, "shifted": shifted, "sent": sent, "columns": columns}


def _monitor(traffic, *args: str):
    html = traffic["root"] / f"report-{len(args)}-{time.monotonic_ns()}.html"
    result = CliRunner().invoke(app, ["monitor", "--log-uri", str(traffic["log"]),
                                      "--registry", str(traffic["registry"]),
                                      "--json", "--html", str(html), *args])
    assert result.exit_code in (0, DRIFT_EXIT_CODE), result.output
    return result.exit_code, json.loads(result.stdout), html


def _expected_drifted(traffic, frame: pd.DataFrame) -> set[str]:
    """The features data validation itself flags on the same rows, in process."""
    registry = open_registry(str(traffic["registry"]))
    number = registry.alias_version(MODEL, "production")
    reference = registry.read_data_schema(MODEL, number)
    settings = load_config(None).validation
    return {d.column for d in feature_drift(frame, reference, settings) if d.drifted}


def _expected_prediction_drift(traffic, frame: pd.DataFrame):
    """The predicted-probability drift measured in process: the production version's recorded
    prediction_profile against onnxruntime's probabilities for the same rows, at the configured threshold."""
    from tollgate.steps.drift import numeric_drift
    from tollgate.steps.monitor import PREDICTION

    registry = open_registry(str(traffic["registry"]))
    number = registry.alias_version(MODEL, "production")
    version = registry.get_version(MODEL, number)
    profile = version.record.prediction_profile
    assert profile and profile.edges, "the production version records its test split's predicted probabilities"
    version_dir = Path(registry.resolve(MODEL, number).uri)
    schema = json.loads((version_dir / "input_schema.json").read_text())
    proba = OnnxModel.from_file(version_dir / "model.onnx", schema).predict_proba(frame[traffic["columns"]])[:, 1]
    threshold = load_config(None).validation.drift.numeric_threshold
    return numeric_drift(PREDICTION, profile, pd.Series(proba.astype(float)), threshold)


def _assert_prediction_drift(report, expected) -> None:
    got = report["prediction_drift"]
    assert got is not None
    assert got["column"] == "predicted probability" and got["measure"] == "jensen_shannon"
    assert got["threshold"] == expected.threshold
    assert got["value"] == pytest.approx(expected.value, abs=1e-12)
    assert got["current"] == pytest.approx(expected.current, abs=1e-12)
    assert got["reference"] == expected.reference
    assert got["drifted"] is expected.drifted
    # The value is the measure of the two share vectors the report shows (Jensen-Shannon divergence in
    # bits: scipy's base-2 distance, squared), not a number from elsewhere.
    from scipy.spatial.distance import jensenshannon

    assert got["value"] == pytest.approx(jensenshannon(got["reference"], got["current"], base=2) ** 2, abs=1e-12)
    line = f"predicted probability: jensen-shannon {expected.value:.4f} > {expected.threshold:g}"
    assert (line in report["alerts"]) is expected.drifted


def test_traffic_from_the_training_distribution_flags_nothing(traffic):
    code, report, html = _monitor(traffic, "--since", traffic["start"].isoformat(),
                                  "--until", traffic["middle"].isoformat())
    assert code == 0, report["alerts"]
    assert report["rows"] == 1000 and report["requests"] == 40
    assert not report["drifted"] and report["alerts"] == []
    assert len(report["drift"]) >= 20
    expected = _expected_prediction_drift(traffic, traffic["steady"])
    assert not expected.drifted and 0 < expected.value
    _assert_prediction_drift(report, expected)
    assert _expected_drifted(traffic, traffic["steady"]) == set()
    page = html.read_text()
    assert "Nothing crossed a threshold" in page and "data:image/png;base64," in page and "<script" not in page


def test_traffic_from_the_drift_knob_flags_the_drifted_features(traffic):
    code, report, html = _monitor(traffic, "--since", traffic["middle"].isoformat(),
                                  "--until", traffic["end"].isoformat())
    assert code == DRIFT_EXIT_CODE
    flagged = {d["column"] for d in report["drift"] if d["drifted"]}
    expected = _expected_drifted(traffic, traffic["shifted"])
    assert expected, "the drift knob at 1.0 must move some features past their thresholds"
    # The log reproduces exactly what data validation measures on the same rows.
    assert flagged == expected
    assert {"channel"} <= flagged
    assert all(any(line.startswith(f"{name}:") for line in report["alerts"]) for name in flagged)
    assert "Drift:" in html.read_text()
    # The model's output moved with its inputs, by what the same rows give in process.
    expected = _expected_prediction_drift(traffic, traffic["shifted"])
    assert expected.drifted and expected.value > expected.threshold, expected
    _assert_prediction_drift(report, expected)
    # The whole log (both halves) also drifts; the per-version volume counts both.
    code, whole, _ = _monitor(traffic)
    assert code == DRIFT_EXIT_CODE and whole["requests"] == 80
    assert whole["versions"][0]["requests"] == 80 and whole["versions"][0]["errors"] == {}
    assert whole["versions"][0]["latency_ms"]["p50"] > 0


def test_late_labels_give_the_same_auc_as_scoring_the_rows_directly(traffic, trained_model_dir):
    labels = traffic["root"] / "labels.csv"
    pd.DataFrame(traffic["sent"], columns=["request_id", "row", "label"]).to_csv(labels, index=False)
    code, report, html = _monitor(traffic, "--labels", str(labels), "--since", traffic["start"].isoformat(),
                                  "--until", traffic["middle"].isoformat())
    assert code == 0
    [realized] = report["realized"]
    assert realized["labelled_rows"] == 1000
    assert realized["decided_by"] == "the classes the server answered"
    assert "<td>the classes the server answered</td>" in html.read_text()
    steady = traffic["steady"]
    # Scoring the rows directly with the graph the server runs.
    schema = json.loads((trained_model_dir / "input_schema.json").read_text())
    model = OnnxModel.from_file(trained_model_dir / "model.onnx", schema)
    direct = roc_auc_score(steady["defaulted"], model.predict_proba(steady[traffic["columns"]])[:, 1])
    assert realized["metrics"]["roc_auc"] == pytest.approx(direct, abs=1e-12)


@pytest.mark.parametrize("args, words", [
    (["--last", "yesterday"], "not a duration"),
    (["--since", "2026-13-01"], "not an ISO date"),
    (["--since", "2026-01-02", "--last", "1d"], "either --since or --last"),
])
def test_bad_window_is_one_line(traffic, args, words):
    result = CliRunner().invoke(app, ["monitor", "--log-uri", str(traffic["log"]), "--registry",
                                      str(traffic["registry"]), *args])
    assert result.exit_code == 1
    assert words in result.output and "Traceback" not in result.output


def test_realized_metrics_decide_an_old_log_by_each_versions_own_threshold(trained_model_dir, tmp_path):
    """A log written before the server logged its answered classes: each version's rows are decided
    with the decision_threshold *that* version's input schema records (0.3 and 0.7 here), read from
    the registry, not with 0.5; each entry says which rule decided it."""
    import shutil

    from tollgate.cli.monitor import logged_thresholds
    from tollgate.steps.evaluate import classification_metrics
    from tollgate.steps.monitor import realized_metrics

    registry = open_registry(str(tmp_path / "registry"))
    for threshold in (0.3, 0.7):
        source = tmp_path / f"v-{threshold}"
        source.mkdir()
        shutil.copy(trained_model_dir / "model.onnx", source / "model.onnx")
        schema = json.loads((trained_model_dir / "input_schema.json").read_text())
        (source / "input_schema.json").write_text(json.dumps({**schema, "decision_threshold": threshold}))
        registry.register(MODEL, source, {"features": {"positive_label": 1}})
    rng = np.random.default_rng(7)
    rows = 400
    proba = rng.uniform(0, 1, rows)
    label = (rng.uniform(0, 1, rows) < proba).astype(int)
    version = ["1"] * 200 + ["2"] * 150 + ["9"] * 50  # v9 is not in the registry
    log = pd.DataFrame({"request_id": [f"r{i}" for i in range(rows)], "row": 0, "model_version": version,
                        "time": pd.Timestamp("2026-11-20T10:00:00Z"), "error": None,
                        "output.probability": proba})
    labels = pd.DataFrame({"request_id": log["request_id"], "label": label})

    thresholds = logged_thresholds(registry, MODEL, log)
    assert thresholds == {"1": 0.3, "2": 0.7}
    realized = {entry["version"]: entry for entry in realized_metrics(log, labels, 1, thresholds)}
    for number, threshold in (("1", 0.3), ("2", 0.7), ("9", 0.5)):
        rows_of = log["model_version"] == number
        expected = classification_metrics(label[rows_of], proba[rows_of], threshold)
        assert realized[number]["metrics"] == expected
        if threshold != 0.5:  # the rows are such that the threshold shows
            assert expected["accuracy"] != classification_metrics(label[rows_of], proba[rows_of])["accuracy"]
    assert realized["1"]["decided_by"] == "v1's decision_threshold 0.3"
    assert realized["9"]["decided_by"] == "the default decision_threshold 0.5 (v9's input schema was not read)"
    # A log with the answered classes is decided by them, whatever the threshold says.
    answered = log.assign(**{"output.predicted_class": (proba >= 0.9).astype(int)})
    first = realized_metrics(answered, labels, 1, thresholds)[0]
    assert first["decided_by"] == "the classes the server answered"
    assert first["metrics"]["recall"] == pytest.approx(
        ((proba[:200] >= 0.9) & (label[:200] == 1)).sum() / (label[:200] == 1).sum())
