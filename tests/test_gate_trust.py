"""The gate through real kfp.local runs: the data schema travels with each version, drift is
reported, shuffled labels and a weaker model are never promoted, a blocking anomaly stops
the run before training, and every run has its report.

One champion run per module; the other runs compare against it and never replace it.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import make_config, run_pipeline
from tests.test_report import parse
from tollgate.cli import app
from tollgate.cli.report import publish_report
from tollgate.data.builtin import generate_applicants
from tollgate.registry import DATA_SCHEMA_FILE, open_registry
from tollgate.steps.report import SECTIONS

pytestmark = pytest.mark.pipeline

SENSITIVE = [{"column": "gender"}, {"column": "age", "bins": [30, 50]}]
# Loose fairness bounds: 600 test rows are too few for the defaults not to flip on noise.
FAIRNESS = {"fairness.sensitive_attributes": SENSITIVE, "gate.fairness.min_disparate_impact": 0.3,
            "gate.fairness.max_equal_opportunity_difference": 0.6, "fairness.min_group_positives": 5}


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    config = make_config(root, **FAIRNESS)
    outcome, summary = run_pipeline(config)
    assert outcome.succeeded, outcome.error
    return root, config, outcome, summary


def challenger(champion, source_frame=None, **overrides):
    """A run against the champion's registry, optionally on a Parquet file of ``source_frame``."""
    root, config, _, _ = champion
    values = {"registry.uri": config.registry.uri, **FAIRNESS, **overrides}
    if source_frame is not None:
        path = root / f"data-{len(list(root.glob('data-*')))}.parquet"
        source_frame.to_parquet(path, index=False)
        values["data.source"] = str(path)
    config = make_config(root, **values)
    return config, *run_pipeline(config)


def assert_champion_kept(config):
    registry = open_registry(config.registry.uri)
    assert registry.version_numbers(config.model_name) == [1]
    assert registry.alias_version(config.model_name, "production") == 1


def test_first_run_stores_the_data_schema_measures_fairness_and_reports(champion):
    _, config, outcome, summary = champion
    assert summary["registered_version"] == 1 and summary["gate"]["passed"]
    version_dir = Path(open_registry(config.registry.uri).resolve(config.model_name, 1).uri)
    schema = json.loads((version_dir / DATA_SCHEMA_FILE).read_text())
    assert schema["rows"] == 3000 and {c["name"] for c in schema["columns"]} >= {"age", "gender", "defaulted"}
    assert summary["validation"]["passed"] and summary["validation"]["drift"] == []
    fairness = summary["candidate"]["fairness"]
    assert set(fairness) == {"gender", "age"} and 0.3 <= fairness["gender"]["disparate_impact"] <= 1.0
    assert {"gender disparate impact", "age equal-opportunity difference"} <= {r["name"] for r in summary["gate"]["rules"]}
    parsed = parse(Path(summary["report"]).read_text())
    assert parsed.sections == [key for key, _ in SECTIONS]
    assert {alt for _, _, alt in parsed.images} >= {"ROC curve", "precision-recall curve", "calibration curve",
                                                    "confusion matrix", "feature importance", "fairness gender",
                                                    "fairness age"}
    # `tollgate report` with no RUN picks the latest run under run.root and puts report.html in it
    config_file = outcome.run_dir.parent.parent / "report-config.yaml"
    config_file.write_text(f"run:\n  root: {outcome.run_dir.parent}\n")
    result = CliRunner().invoke(app, ["report", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert f"Report {outcome.run_dir / 'report.html'}" in result.output.replace("\n", "")
    assert "gate: PASSED" in result.output and "fairness gender: disparate impact" in result.output
    assert (outcome.run_dir / "report.html").read_bytes() == Path(summary["report"]).read_bytes()


def test_report_reads_how_the_run_ended_from_its_summary_file(champion, tmp_path):
    # `tollgate run` writes summary.json beside the run; `tollgate report` reads it back as the typed
    # summary for the model name and, for a failed run, why it stopped. An unreadable file is named,
    # and the report is still written from the artifacts.
    import shutil

    from tollgate.summary import SUMMARY_FILE

    _, _, outcome, summary = champion
    run_dir = tmp_path / outcome.run_dir.name
    shutil.copytree(outcome.run_dir, run_dir)
    (run_dir / SUMMARY_FILE).write_text(json.dumps({**summary, "succeeded": False, "model_name": "other-model",
                                                    "error": "boom [x]", "failed_step": "deploy"}))
    result = CliRunner().invoke(app, ["report", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    lines = json.loads(result.output)["summary"]
    assert lines[0] == "run failed: boom [x]"
    for damaged, error in (('{"run_dir": ', "JSONDecodeError("),
                           ("[]", "ValueError('a run summary is a JSON object, not a JSON list')")):
        (run_dir / SUMMARY_FILE).write_text(damaged)
        result = CliRunner().invoke(app, ["report", str(run_dir), "--json"])
        assert result.exit_code == 0, result.output
        assert f"warning: {run_dir / SUMMARY_FILE} is unreadable ({error}" in " ".join(result.stderr.split())
        assert not any(line.startswith("run failed") for line in json.loads(result.stdout)["summary"])


def test_drifted_data_is_reported_and_a_weaker_model_is_not_promoted(champion):
    # One shallow boosting round is far weaker than the champion; absolute floors are lowered
    # so that only the comparison with the champion can stop it.
    config, outcome, summary = challenger(
        champion, **{"data.builtin.drift": 1.0, "data.builtin.seed": 8,
                     "train.candidates": [{"name": "one-round", "family": "hist_gradient_boosting",
                                           "params": {"max_iter": 1, "max_depth": 2, "early_stopping": False}}],
                     "gate.absolute.roc_auc.min": 0.55, "gate.absolute.pr_auc.min": 0.1})
    assert outcome.succeeded, outcome.error
    validation = summary["validation"]
    assert validation["passed"] and validation["reference_version"] == 1
    drifted = {d["column"] for d in validation["drift"] if d["drifted"]}
    assert {"channel", "revolving_utilization"} <= drifted
    warnings = {(a["column"], a["check"]) for a in validation["anomalies"]}
    assert ("channel", "drift") in warnings and ("channel", "unseen_categories") in warnings
    gate = summary["gate"]
    failed = {r["name"] for r in gate["rules"] if not r["passed"]}
    assert not gate["passed"] and "roc_auc vs champion" in failed
    assert not failed & {"roc_auc threshold", "pr_auc threshold"}
    assert "registered_version" not in summary
    assert_champion_kept(config)
    report = parse(Path(summary["report"]).read_text())
    assert "drift per feature" in [alt for _, _, alt in report.images]
    assert "revolving_utilization" in report.text["drift"] and "BLOCKED" in report.text["gate"]


def test_a_model_trained_on_shuffled_labels_is_never_promoted(champion):
    frame = generate_applicants(rows=1500, seed=9)
    frame["defaulted"] = frame["defaulted"].sample(frac=1.0, random_state=0).to_numpy()
    config, outcome, summary = challenger(champion, frame)
    assert outcome.succeeded, outcome.error
    gate = summary["gate"]
    assert not gate["passed"]
    failed = {r["name"] for r in gate["rules"] if not r["passed"]}
    assert "roc_auc threshold" in failed and summary["candidate"]["test_metrics"]["roc_auc"] < 0.62
    # The champion scores the same shuffled test rows no better, so the change rule cannot
    # tell; the absolute floor is what stops a model that learned nothing.
    assert summary["champion"]["version"] == 1 and summary["champion"]["metrics"]["roc_auc"] < 0.62
    assert "registered_version" not in summary
    assert_champion_kept(config)
    assert Path(summary["report"]).is_file()


def test_a_blocking_anomaly_stops_the_run_before_training_and_still_gets_a_report(champion):
    frame = generate_applicants(rows=1500, seed=10).drop(columns="credit_score")
    config, outcome, summary = challenger(champion, frame)
    assert not outcome.succeeded and outcome.failed_task == "validate"
    assert "credit_score: missing_column (observed absent; allowed present" in outcome.error
    assert "nothing will be trained or registered" in outcome.error
    assert not {t.name for t in outcome.timings} & {"preprocess", "train", "evaluate", "gate", "register"}
    assert_champion_kept(config)
    path, lines = publish_report(outcome.run_dir, config.model_name)
    assert path == outcome.run_dir / "report.html"
    parsed = parse(path.read_text())
    assert parsed.sections == [key for key, _ in SECTIONS]
    assert "missing_column" in parsed.text["validation"] and "not reached" in parsed.text["summary"]
    assert any("blocking: credit_score: missing_column" in line for line in lines)


def test_summary_shows_validation_warnings_and_fairness(champion):
    from io import StringIO

    from rich.console import Console

    from tollgate.summary import RunSummary, render_summary

    _, _, _, summary = champion
    summary = dict(summary, validation={**summary["validation"], "anomalies": [
        {"column": "region", "check": "unseen_categories", "observed": "5.00% of rows in unseen ['atlantis']",
         "allowed": "<= 1.00%", "blocking": False}]})
    buffer = StringIO()
    render_summary(RunSummary.from_dict(summary), Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "warning region: unseen_categories (observed 5.00% of rows in unseen ['atlantis']; allowed <= 1.00%)" in text
    assert "Fairness gender: disparate impact" in text and f"Report {summary['report']}" in text


def test_a_column_the_challenger_drops_still_lets_the_champion_be_scored(champion):
    """The champion used 'region'; this run drops it from its own features. The champion is
    scored with its own columns on the same test rows, so the gate can still compare."""
    root, config, _, _ = champion
    config, outcome, summary = challenger(champion, **{"data.drop": ["applicant_id", "region"]})
    assert outcome.succeeded, outcome.error
    assert summary["champion"]["version"] == 1
    assert not summary["champion"].get("error"), summary["champion"].get("error")
    assert summary["champion"]["metrics"]["roc_auc"] > 0.6
    # The champion was scored on every metric the candidate was, not only the one checked above.
    assert set(summary["champion"]["metrics"]) == set(summary["candidate"]["test_metrics"])
    assert all(0.0 <= value <= 1.0 for value in summary["champion"]["metrics"].values())
    # This run's model really goes without 'region': preprocess's feature spec (the artifact train,
    # export and register read) lists every column the champion was trained on except 'region'.
    from tollgate.artifacts import read_record
    from tollgate.local_run import find_output
    from tollgate.records import FeatureSpec

    features = find_output(outcome.pipeline_dir, "preprocess", "features")
    assert features is not None, f"no preprocess/features under {outcome.pipeline_dir}"
    spec = read_record(FeatureSpec, features)
    ours = [column["name"] for column in spec.schema["columns"]]
    assert "region" not in ours and "region" not in spec.columns
    champion_dir = Path(open_registry(config.registry.uri).resolve(config.model_name, 1).uri)
    theirs = [column["name"] for column in json.loads((champion_dir / "input_schema.json").read_text())["columns"]]
    assert "region" in theirs
    assert sorted(ours) == sorted(set(theirs) - {"region"})
    rules = {r["name"] for r in summary["gate"]["rules"]}
    assert "champion comparable" not in rules and "roc_auc vs champion" in rules
