"""Each component run for real through kfp.local, fed by importers where it needs input artifacts.

(kfp.local cannot pass input artifacts to a component called on its own, so every
test wraps the component under test in a tiny pipeline.)
"""

import json
import re

import joblib
import pytest
from kfp import dsl, local

from tests.conftest import make_config, written_with
from tollgate.artifacts import read_frame
from tollgate.components import build_components
from tollgate.config import TollgateConfig
from tollgate.data.builtin import generate_applicants
from tollgate.local_run import _failure_reason, find_output
from tollgate.records import CandidateEvaluation, ChampionEvaluation, Evaluation, RocCurve, Selection
from tollgate.serving.runtime import OnnxModel
from tollgate.settings import IngestSettings, PreprocessSettings
from tollgate.steps.gate import GatePolicy
from tollgate.steps.select import SELECTION_FILE

ops = build_components("tollgate:test")


@pytest.fixture
def kfp_local(tmp_path):
    root = tmp_path / "kfp-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    return root


def only_run_dir(root):
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    return run_dir


def test_ingest_writes_the_table_with_lineage(kfp_local, tmp_path):
    config = make_config(tmp_path, **{"data.builtin.rows": 400})

    @dsl.pipeline
    def just_ingest() -> int:
        return ops.ingest(settings_json=IngestSettings.from_config(config).to_json(), data_source="builtin", scheduled_time="").outputs["Output"]

    task = just_ingest()
    assert task.output == 400
    raw = find_output(only_run_dir(kfp_local), "ingest", "raw")
    frame = read_frame(raw)
    assert len(frame) == 400 and "defaulted" in frame.columns
    # kfp.local keeps the artifact on this disk (a local URI): written without compression.
    assert written_with(raw) == "uncompressed"


def test_ingest_failure_stops_the_pipeline_with_the_reason(kfp_local, tmp_path, capsys):
    config = make_config(tmp_path, **{"data.target": "no_such_column"})

    @dsl.pipeline
    def just_ingest() -> int:
        return ops.ingest(settings_json=IngestSettings.from_config(config).to_json(), data_source="builtin", scheduled_time="").outputs["Output"]

    with pytest.raises(RuntimeError) as failure:
        just_ingest()
    # kfp.local names the task; the reason is the task's own error, which `tollgate run` shows the user
    # (local_run reads it from the task output the same way).
    assert re.sub(r"\x1b\[[0-9;]*m", "", str(failure.value)).endswith("Inner task failed: 'ingest'.")
    reason = _failure_reason(capsys.readouterr().out)
    assert reason is not None
    assert reason.startswith("DataError: target column 'no_such_column' is not in the data; "
                             "set data.target to one of: 'applicant_id', ")
    assert reason.endswith("'defaulted'")  # the real target is among the names offered
    assert find_output(only_run_dir(kfp_local), "ingest", "raw") is None  # no table was written


def write_evaluation(path, candidate_auc, champion_auc, champion_version=4):
    record = Evaluation(
        candidate=CandidateEvaluation(candidate_id="c", family="logistic_regression", params={},
                                      validation_metrics={}, selection_metric="roc_auc", rows=100,
                                      metrics={"roc_auc": candidate_auc, "pr_auc": 0.5}),
        champion=None if champion_auc is None else
        ChampionEvaluation(version=champion_version, metrics={"roc_auc": champion_auc, "pr_auc": 0.5}))
    path.write_text(record.to_json())
    return str(path)


@pytest.mark.parametrize("candidate_auc, champion_auc, expected", [
    (0.82, 0.78, True),     # better than the champion
    (0.76, 0.79, False),    # worse by 0.03 > 0.005 tolerance
    (0.75, None, True),     # no champion: absolute thresholds only
    (0.65, None, False),    # fails the absolute threshold
])
def test_gate_component_output_drives_the_branch(kfp_local, tmp_path, candidate_auc, champion_auc, expected):
    evaluation_uri = write_evaluation(tmp_path / "evaluation.json", candidate_auc, champion_auc)
    policy = GatePolicy.from_config({"absolute": {"roc_auc": {"min": 0.7}}, "max_degradation": {"roc_auc": 0.005}}
                                    ).to_json()

    @dsl.pipeline
    def just_gate() -> bool:
        evaluation = dsl.importer(artifact_uri=evaluation_uri, artifact_class=dsl.Artifact, reimport=True)
        return ops.gate(policy_json=policy, evaluation=evaluation.output).outputs["Output"]

    assert just_gate().output is expected
    decision = json.loads(find_output(only_run_dir(kfp_local), "gate", "decision").read_text())
    assert decision["passed"] is expected
    assert decision["champion_version"] == (4 if champion_auc is not None else None)


def test_preprocess_train_select_pick_the_best_candidate(kfp_local, tmp_path):
    config: TollgateConfig = make_config(tmp_path)
    raw_path = tmp_path / "raw.parquet"
    generate_applicants(rows=1500, seed=21).to_parquet(raw_path, index=False)
    candidates = [
        # The weak one comes first, so a selector that just took the first would fail; it cannot split
        # (min_samples_leaf above the row count), so it ranks nothing.
        {"candidate_id": "weak", "family": "hist_gradient_boosting",
         "params_json": json.dumps({"max_iter": 1, "max_depth": 1, "learning_rate": 0.01, "min_samples_leaf": 5000})},
        {"candidate_id": "strong", "family": "logistic_regression", "params_json": json.dumps({"C": 1.0, "max_iter": 500})},
    ]

    @dsl.pipeline
    def fan_out() -> str:
        raw = dsl.importer(artifact_uri=str(raw_path), artifact_class=dsl.Dataset, reimport=True)
        prep = ops.preprocess(settings_json=PreprocessSettings.from_config(config).to_json(), raw=raw.output)
        with dsl.ParallelFor(candidates, parallelism=2) as candidate:
            trained = ops.train(candidate=candidate, train=prep.outputs["train"],
                                validation=prep.outputs["validation"], test=prep.outputs["test"],
                                features=prep.outputs["features"])
        return ops.select(models=dsl.Collected(trained.outputs["model"]), selection_metric="roc_auc",
                          multiclass_selection_metric="roc_auc_ovr_macro").outputs["Output"]

    assert fan_out().output == "strong"
    run_dir = only_run_dir(kfp_local)
    best = find_output(run_dir, "select", "best")
    selection = Selection.from_json((best / SELECTION_FILE).read_text())
    assert selection.winner.candidate_id == "strong" and selection.selection_metric == "roc_auc"
    scores = {row.candidate_id: row.validation_metrics["roc_auc"] for row in selection.leaderboard}
    assert scores["strong"] > scores["weak"] + 0.05
    features = json.loads(find_output(run_dir, "preprocess", "features").read_text())
    test = read_frame(find_output(run_dir, "preprocess", "test"))
    graph = OnnxModel.from_file(best / "model.onnx", features["schema"])
    proba = graph.predict_proba(test)[:, 1]
    model = joblib.load(best / "model.joblib")  # the training artifact, read only by this test
    assert proba.shape == (len(test),) and ((proba >= 0) & (proba <= 1)).all()
    # Integer hyperparameters survive the trip through ParallelFor (protobuf would make them floats).
    assert model.named_steps["model"].max_iter == 500 and isinstance(model.named_steps["model"].max_iter, int)


def test_evaluate_shows_kfp_the_headline_metric_and_the_champion_it_scored():
    from tollgate.steps.evaluate import kfp_view

    binary = Evaluation(
        candidate=CandidateEvaluation(candidate_id="c", family="logistic_regression", params={}, validation_metrics={},
                                      selection_metric="roc_auc", rows=100, metrics={"roc_auc": 0.82, "pr_auc": 0.51},
                                      confusion_matrix=[[60, 10], [12, 18]],
                                      roc=RocCurve(fpr=[0.0, 1.0], tpr=[0.0, 1.0], thresholds=[1.0, 0.0])),
        champion=ChampionEvaluation(version=4, metrics={"roc_auc": 0.78, "pr_auc": 0.47}))
    shown = kfp_view(binary)
    assert shown.headline == 0.82 and shown.metadata == {"candidate_roc_auc": 0.82, "champion_version": 4}
    assert shown.scalars == {"roc_auc": 0.82, "pr_auc": 0.51}
    assert shown.confusion == (["negative", "positive"], [[60, 10], [12, 18]])
    assert shown.roc == ([0.0, 1.0], [0.0, 1.0], [1.0, 0.0])

    multiclass = Evaluation(
        candidate=CandidateEvaluation(candidate_id="m", family="random_forest", params={}, validation_metrics={},
                                      selection_metric="roc_auc_ovr_macro", rows=90, task="multiclass",
                                      classes=["high", "low", "medium"],
                                      metrics={"roc_auc_ovr_macro": 0.71, "f1_macro": 0.44},
                                      confusion_matrix=[[20, 5, 5], [4, 22, 4], [6, 6, 18]]))
    shown = kfp_view(multiclass)
    assert shown.headline == 0.71 and shown.metadata == {"candidate_roc_auc_ovr_macro": 0.71, "champion_version": None}
    assert shown.confusion[0] == ["high", "low", "medium"] and shown.roc is None
