"""retrain.when (issue 15) through kfp.local: a run skips on undrifted traffic and trains on drifted traffic."""

from __future__ import annotations

import json
import math
import re
import shutil
import time

import pytest

from tests.conftest import make_config, run_pipeline
from tollgate.data.builtin import generate_applicants
from tollgate.serving.client import column_inputs
from tollgate.serving.predlog import Entry, PredictionLog
from tollgate.serving.runtime import OnnxModel
from tollgate.serving.schema import InputSchema

MODEL = "credit-default"


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def write_traffic(log_dir, model_dir, version: str, drift: float, rows: int = 600, seed: int = 99) -> None:
    """A prediction log of ``rows`` requests as the server writes it (same writer, same schema casting)."""
    schema = InputSchema.from_dict(json.loads((model_dir / "input_schema.json").read_text()))
    names = [c.name for c in schema.columns]
    frame = generate_applicants(rows=rows, seed=seed, drift=drift)[names]
    schema_json = json.loads((model_dir / "input_schema.json").read_text())
    proba = OnnxModel.from_file(model_dir / "model.onnx", schema_json).predict_proba(frame)[:, 1]
    log = PredictionLog(str(log_dir), MODEL, version, names, schema.columns_from_tensors, flush_records=100).start()
    for index, record in enumerate(frame.to_dict("records")):
        row = {k: _plain(v) for k, v in record.items()}
        log.record(Entry(time.time(), f"r{index}", "v2-rest", 1.0, None, column_inputs([row], for_grpc=False),
                         [("probability", [float(proba[index])])]))
    log.close()


@pytest.fixture
def registry_copy(trained_model_dir, tmp_path):
    """A private copy of the session's registry (production = the trained version), so runs here can register."""
    target = tmp_path / "registry"
    shutil.copytree(trained_model_dir.parent.parent, target)
    version = str(json.loads((trained_model_dir / "metadata.json").read_text())["version"])
    return target, version


def _steps(summary) -> set[str]:
    return {row["step"] for row in summary["steps"]}


def test_drift_skips_on_undrifted_traffic_and_trains_on_drifted(registry_copy, trained_model_dir, tmp_path):
    registry, version = registry_copy
    steady, shifted = tmp_path / "steady", tmp_path / "shifted"
    write_traffic(steady, trained_model_dir, version, drift=0.0)
    write_traffic(shifted, trained_model_dir, version, drift=1.0, seed=100)

    config = make_config(tmp_path, **{"registry.uri": str(registry), "retrain.when": "drift",
                                      "monitoring.log_uri": str(steady)})
    outcome, summary = run_pipeline(config)
    assert outcome.succeeded, outcome.error
    assert summary["retrain"]["train"] is False and summary["retrain"]["basis"] == "traffic"
    assert summary["skipped"].startswith(f"skipped: no drift since v{version} (largest ")
    assert "600 rows of served traffic" in summary["skipped"]
    assert summary["retrain"]["largest"]["value"] <= summary["retrain"]["largest"]["threshold"]
    assert _steps(summary) == {"retrain-check"} and "candidate" not in summary

    config = make_config(tmp_path, **{"registry.uri": str(registry), "retrain.when": "drift",
                                      "monitoring.log_uri": str(shifted)})
    outcome, summary = run_pipeline(config)
    assert outcome.succeeded, outcome.error
    assert summary["retrain"]["train"] is True and summary["retrain"]["alerts"]
    assert any(a.startswith("channel:") for a in summary["retrain"]["alerts"])
    assert {"ingest", "train", "evaluate", "gate"} <= _steps(summary) and "candidate" in summary
    assert "skipped" not in summary


def test_without_a_log_drift_is_measured_on_the_incoming_data(registry_copy, tmp_path):
    registry, version = registry_copy
    config = make_config(tmp_path, **{"registry.uri": str(registry), "retrain.when": "drift",
                                      "data.builtin.seed": 31})
    outcome, summary = run_pipeline(config)
    assert outcome.succeeded, outcome.error
    assert summary["retrain"]["basis"] == "data" and summary["retrain"]["train"] is False
    assert summary["skipped"].startswith(f"skipped: no drift since v{version}")
    assert "3000 rows of new data" in summary["skipped"]


def test_new_data_skips_when_the_fingerprint_is_unchanged(registry_copy, tmp_path):
    registry, version = registry_copy
    config = make_config(tmp_path, **{"registry.uri": str(registry), "retrain.when": "new_data"})
    outcome, summary = run_pipeline(config)
    assert outcome.succeeded, outcome.error
    assert summary["retrain"]["train"] is False, summary["retrain"]
    assert summary["skipped"].startswith(f"skipped: no new data since v{version}")
    assert _steps(summary) == {"retrain-check"}
    # The HTML report of the skipped run says so too.
    from pathlib import Path

    from tollgate.cli.report import publish_report

    report, _ = publish_report(Path(summary["run_dir"]), MODEL)
    assert f"skipped: no new data since v{version}" in report.read_text()


def test_drift_setting_compiles_with_the_check_first(tmp_path):
    import yaml

    from tollgate.config import load_config
    from tollgate.pipelines.training import compile_pipeline

    package = compile_pipeline(load_config(None, {"retrain.when": "drift"}), tmp_path / "p.yaml")
    spec = next(yaml.safe_load_all(package.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"retrain-check", "condition-1"}
    assert tasks["condition-1"]["dependentTasks"] == ["retrain-check"]
    assert "retrain-check" in tasks["condition-1"]["triggerPolicy"]["condition"]
    always = next(yaml.safe_load_all(compile_pipeline(load_config(None), tmp_path / "a.yaml").read_text()))
    assert "retrain-check" not in always["root"]["dag"]["tasks"]


def test_new_data_trains_when_the_fingerprint_changed(registry_copy, trained_model_dir, tmp_path):
    from tollgate.registry import open_registry
    from tollgate.settings import IngestSettings, RetrainSettings
    from tollgate.steps.ingest import run_ingest
    from tollgate.steps.retrain import run_retrain_check

    registry, version = registry_copy
    recorded = json.loads((trained_model_dir / "metadata.json").read_text())["data"]["fingerprint"]
    unchanged = make_config(tmp_path, **{"registry.uri": str(registry), "retrain.when": "new_data"})
    # The fixture's data, measured the same way, is the recorded fingerprint: the other seed is what differs.
    assert run_ingest(IngestSettings.from_config(unchanged), unchanged.data.source).fingerprint == recorded
    config = make_config(tmp_path, **{"registry.uri": str(registry), "retrain.when": "new_data",
                                      "data.builtin.seed": 31})
    fingerprint = run_ingest(IngestSettings.from_config(config), config.data.source).fingerprint
    assert fingerprint != recorded

    decision = run_retrain_check(RetrainSettings.from_config(config), open_registry(str(registry)), MODEL,
                                 config.data.source)
    assert decision.train is True, decision
    assert decision.message == (f"new data since v{version}: fingerprint {fingerprint[:19]}... "
                                f"differs from {recorded[:19]}...")
    assert decision.basis == "fingerprint" and decision.production_version == int(version)
    assert decision.rows == 3000 and decision.alerts == []


def test_drifted_incoming_data_trains_with_an_alert_per_drifted_column(registry_copy, tmp_path):
    from tollgate.registry import open_registry
    from tollgate.settings import RetrainSettings
    from tollgate.steps.retrain import run_retrain_check

    registry, version = registry_copy
    config = make_config(tmp_path, **{"registry.uri": str(registry), "retrain.when": "drift",
                                      "data.builtin.drift": 1.0})
    decision = run_retrain_check(RetrainSettings.from_config(config), open_registry(str(registry)), MODEL,
                                 config.data.source)
    assert decision.basis == "data" and decision.production_version == int(version)
    assert decision.train is True, decision.message
    assert decision.rows == 3000
    # The categorical column the drift moves is named, with its measure and the configured threshold.
    channel = [a for a in decision.alerts if a.startswith("channel: ")]
    assert len(channel) == 1, decision.alerts
    assert re.fullmatch(r"channel: l-infinity \d\.\d{4} > " + re.escape(f"{config.validation.drift.categorical_threshold:g}"),
                        channel[0]), channel[0]
    # Every alert is "<column>: <measure> <value> > <threshold>" with the value past the threshold.
    for alert in decision.alerts:
        value, threshold = alert.rsplit(" ", 3)[1], alert.rsplit(" ", 1)[1]
        assert float(value) > float(threshold), alert
    assert decision.message == f"new data drifted from v{version}'s training data: " + "; ".join(decision.alerts)
    assert decision.largest is not None and decision.largest.value > decision.largest.threshold
