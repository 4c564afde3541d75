"""The typed records steps hand each other: round trips, versions, and what a reader refuses."""

import json
import re
import subprocess
import sys

import pytest

from tollgate.records import (
    Anomaly,
    AttributeFairness,
    CandidateEvaluation,
    CandidateResult,
    ChampionEvaluation,
    ClassMetrics,
    ClassPrecisionRecallCurve,
    ColumnSchema,
    DataLineage,
    DataSchema,
    Decision,
    DeployResult,
    Evaluation,
    FeatureDrift,
    FeatureImportance,
    FeatureSpec,
    GateVerdict,
    ImportanceBounds,
    InfraValidation,
    LargestDrift,
    LeaderboardEntry,
    ModelInputs,
    NumericProfile,
    OnnxExportCheck,
    ProbabilityAgreement,
    RecordError,
    RetrainDecision,
    RocCurve,
    Rule,
    Selection,
    ServedFeatures,
    SklearnAgreement,
    TrainingData,
    ValidationReport,
    VersionMetadata,
)


def candidate(**changes) -> CandidateEvaluation:
    values = dict(candidate_id="hgb[max_leaf_nodes=15]", family="hist_gradient_boosting",
                  params={"max_leaf_nodes": 15, "learning_rate": 0.1}, validation_metrics={"roc_auc": 0.81},
                  selection_metric="roc_auc", metrics={"roc_auc": 0.8, "pr_auc": 0.5}, rows=400,
                  confusion_matrix=[[300, 20], [40, 40]], roc=RocCurve(fpr=[0, 1], tpr=[0, 1], thresholds=[1, 0]),
                  fairness={"sex": {"disparate_impact": 0.9, "equal_opportunity_difference": None, "groups": []}})
    values.update(changes)
    return CandidateEvaluation(**values)


EXAMPLES = [
    FeatureSpec(target="y", positive_label=1, negative_label=0, numeric=["a"], categorical=["b"],
                schema={"columns": [{"name": "a", "dtype": "float64"}]}),
    CandidateResult(candidate_id="lr[C=1]", family="logistic_regression", params={"C": 1.0, "max_iter": 500},
                    validation_metrics={"roc_auc": 0.7}, fit_seconds=0.25,
                    onnx_export=OnnxExportCheck(ProbabilityAgreement(rows=3, max_abs_difference=1e-7, class_flips=0))),
    Selection(winner=CandidateResult(candidate_id="a", family="random_forest", params={"n_estimators": 10},
                                     validation_metrics={"roc_auc": 0.7}),
              selection_metric="roc_auc",
              leaderboard=[LeaderboardEntry("a", "random_forest", {"n_estimators": 10}, {"roc_auc": 0.7})]),
    ValidationReport(anomalies=[Anomaly("age", "out_of_range", "5%", "<= 1%", False)], reference_version=3,
                     rows=1000, drift=[FeatureDrift("age", "numeric", "jensen_shannon", 0.2, 0.05, ["lo", "hi"],
                                                    [0.5, 0.5], [0.1, 0.9])], note="compared with v3"),
    Evaluation(candidate=candidate(), champion=ChampionEvaluation(version=2, metrics={"roc_auc": 0.79})),
    Evaluation(candidate=candidate(), champion=ChampionEvaluation(version=2, error="a column is gone")),
    Evaluation(candidate=candidate(), champion=None),
    Decision(passed=False, reasons=["roc_auc fell"], rules=[Rule("max_degradation", "roc_auc", False, 0.7, "0.01",
                                                                 "worse")], champion_version=2),
    DataSchema(rows=10, target="y", positive_label=1, label_shares={"0": 0.7, "1": 0.3}, label_missing=0,
               duplicate_share=0.0, columns=[ColumnSchema("age", "feature", "float64", "numeric", 0.1, min=1.0, max=9.0,
                                                          profile=NumericProfile([5.0], [0, 0.5, 0.5, 0])),
                                             ColumnSchema("y", "label", "int64", "numeric", 0.0)]),
    RetrainDecision(train=False, when="drift", message="skipped: no drift since v3", production_version=3,
                    basis="traffic", rows=120, largest=LargestDrift(column="age", measure="jensen_shannon", value=0.01, threshold=0.05)),
    InfraValidation(passed=True, reason="answered exactly", protocols=["rest-v2", "grpc"], rows=64,
                    max_abs_difference={"rest-v2": 0.0, "grpc": 0.0}, sklearn_agreement=SklearnAgreement(rows=64, max_abs_difference=1e-7, class_flips=0,
                                                                       tolerance=1e-5)),
    DeployResult(target="local", version=3, aliases={"production": {"version": 3}}, detail="production -> v3"),
    VersionMetadata(candidate_id="hgb", family="hist_gradient_boosting", params={"max_iter": 200},
                    test_metrics={"roc_auc": 0.8}, data=TrainingData(DataLineage(source="builtin", rows=20000)),
                    gate=GateVerdict(passed=True, reasons=[]), replaced_champion=2,
                    features=ServedFeatures(["a"], ["b"], target="y", positive_label=1, negative_label=0),
                    model_name="credit-default", version=3, created_at="2026-11-21T10:00:00+00:00"),
]


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json_with_its_kind_and_version(record):
    text = record.to_json()
    value = json.loads(text)
    assert value["record"] == record.KIND and value["record_version"] == record.VERSION
    assert type(record).from_json(text) == record


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_a_record_from_a_newer_tollgate_is_refused_with_what_to_do(record):
    value = record.to_dict()
    value["record_version"] = record.VERSION + 1
    with pytest.raises(RecordError, match=rf"format {record.VERSION + 1}, written by a newer Tollgate.*upgrade"):
        type(record).from_dict(value)


def test_a_record_of_another_kind_is_refused():
    with pytest.raises(RecordError, match="expected a evaluation record, found a decision record"):
        Evaluation.from_json(next(r for r in EXAMPLES if isinstance(r, Decision)).to_json())
    with pytest.raises(RecordError, match="not valid JSON"):
        Decision.from_json("{truncated")
    with pytest.raises(RecordError, match="must be a JSON object"):
        Decision.from_json("[]")


def test_an_untagged_evaluation_from_before_records_is_upgraded():
    """Format 0: what evaluate wrote before records (run directories keep it): params as JSON text."""
    old = {"candidate": {"candidate_id": "lr", "family": "logistic_regression", "params_json": '{"C": 2}',
                         "validation_metrics": {"roc_auc": 0.7}, "metrics": {"roc_auc": 0.71}, "rows": 10,
                         "confusion_matrix": [[5, 0], [0, 5]], "onnx_export": {"validation": {}}},
           "champion": {"version": 4, "metrics": {"roc_auc": 0.7}}}
    record = Evaluation.from_dict(old)
    assert record.candidate.params == {"C": 2} and record.candidate.selection_metric == "roc_auc"
    assert record.champion == ChampionEvaluation(version=4, metrics={"roc_auc": 0.7})
    assert record.candidate.onnx_export == OnnxExportCheck()  # an empty check measured nothing
    assert Decision.from_dict({"passed": True, "reasons": [], "rules": []}).passed is True


def test_a_null_where_a_value_is_never_none_reads_as_its_default_and_a_wrong_shape_is_a_record_error():
    # onnx_export and importance are never None in a record: a hand-edited null reads as "nothing
    # measured", so readers can use them without a None check; a value of the wrong shape is refused
    # as a RecordError naming the record (one line for the CLI), not a TypeError.
    candidate = {"candidate_id": "lr", "family": "logistic_regression", "params": {}, "validation_metrics": {},
                 "selection_metric": "roc_auc", "metrics": {"roc_auc": 0.7}, "rows": 10}
    result = CandidateResult.from_dict({"candidate_id": "lr", "family": "logistic_regression", "params": {},
                                        "validation_metrics": {}, "onnx_export": None})
    assert result.onnx_export == OnnxExportCheck()
    evaluation = Evaluation.from_dict({"candidate": {**candidate, "importance": None, "onnx_export": None}})
    assert (evaluation.candidate.importance, evaluation.candidate.onnx_export) == ([], OnnxExportCheck())
    for malformed, message in (({"onnx_export": ["x"]}, "'list' object has no attribute 'get'"),
                               ({"importance": [{"feature": "age"}]}, "missing 2 required positional arguments"),
                               ({"roc": {"fpr": [0.0]}}, "missing 2 required positional arguments")):
        with pytest.raises(RecordError, match=rf"^evaluation record is malformed: .*{re.escape(message)}"):
            Evaluation.from_dict({"candidate": {**candidate, **malformed}})


def test_an_evaluation_from_before_its_nested_values_were_typed_reads_them_as_types():
    """Format 0 with the curves, profile, importance and export check as evaluate and train wrote them
    (plain JSON objects); a key a newer Tollgate added inside one is read past."""
    bounds = {"rows_sampled": 2000, "rows_total": 4000, "features_permuted": 200, "features_total": 900,
              "selection": "screened", "max_features": 200, "repeats": 3, "time_budget_seconds": 300.0,
              "budget_hit": False, "seconds": 41.5}
    agreement = {"rows": 4000, "max_abs_difference": 2e-7, "class_flips": 1}
    old = {"candidate": {"candidate_id": "lr", "family": "logistic_regression", "params_json": "{}",
                         "validation_metrics": {"roc_auc": 0.7}, "metrics": {"roc_auc": 0.71}, "rows": 4000,
                         "roc": {"fpr": [0.0, 0.4, 1.0], "tpr": [0.0, 0.8, 1.0], "thresholds": [1.0, 0.5, 0.0]},
                         "pr": {"precision": [0.3, 1.0], "recall": [1.0, 0.0]},
                         "calibration": {"predicted": [0.2, 0.8], "observed": [0.1, 0.9]},
                         "prediction_profile": {"edges": [0.5], "shares": [0.4, 0.6, 0.0]},
                         "importance": [{"feature": "age", "importance": 0.1, "std": 0.01, "rank": 1}],
                         "importance_bounds": bounds, "onnx_export": {"validation": agreement}},
           "champion": None}
    candidate = Evaluation.from_dict(old).candidate
    assert candidate.roc and candidate.roc.tpr == [0.0, 0.8, 1.0] and candidate.roc.thresholds[1] == 0.5
    assert candidate.pr and candidate.pr.recall == [1.0, 0.0]
    assert candidate.calibration and candidate.calibration.observed == [0.1, 0.9]
    assert candidate.prediction_profile == NumericProfile(edges=[0.5], shares=[0.4, 0.6, 0.0])
    assert candidate.importance == [FeatureImportance(feature="age", importance=0.1, std=0.01)]
    assert candidate.importance_bounds == ImportanceBounds(**bounds)
    assert candidate.onnx_export.validation == ProbabilityAgreement(rows=4000, max_abs_difference=2e-7, class_flips=1)
    # Written back, each is the object it was read from (less the key it did not know).
    written = Evaluation.from_dict(old).to_dict()["candidate"]
    assert {k: written[k] for k in ("roc", "pr", "calibration", "prediction_profile", "importance_bounds",
                                    "onnx_export")} == {k: old["candidate"][k] for k in (
        "roc", "pr", "calibration", "prediction_profile", "importance_bounds", "onnx_export")}
    assert written["importance"] == [{"feature": "age", "importance": 0.1, "std": 0.01}]
    # candidate.json carries the same export check.
    stored = CandidateResult(candidate_id="lr", family="logistic_regression", params={}, validation_metrics={},
                             onnx_export=candidate.onnx_export).to_dict()
    assert stored["onnx_export"] == {"validation": agreement}
    assert CandidateResult.from_dict(stored).onnx_export.validation.class_flips == 1


def test_per_class_rows_and_curves_read_typed_and_are_written_under_class_as_stored():
    """A multiclass evaluation's per-class table and curves keep "class" on disk (a Python keyword: the
    field is ``class_label``); a class absent from the test split has no average precision, and its
    curve no such key."""
    per_class = [{"class": "high", "precision": 0.7, "recall": 0.6, "f1": 0.65, "support": 54, "roc_auc_ovr": 0.94},
                 {"class": "low", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "roc_auc_ovr": None}]
    curves = [{"class": "high", "precision": [0.2, 1.0], "recall": [1.0, 0.0], "average_precision": 0.8},
              {"class": "low", "precision": [], "recall": []}]
    value = Evaluation(candidate=candidate(task="multiclass", classes=["high", "low"], roc=None)).to_dict()
    value["candidate"].update(per_class=[{**row, "added_later": 1} for row in per_class], pr_per_class=curves)
    record = Evaluation.from_dict(value).candidate
    assert record.per_class == [ClassMetrics("high", precision=0.7, recall=0.6, f1=0.65, support=54, roc_auc_ovr=0.94),
                                ClassMetrics("low", precision=0.0, recall=0.0, f1=0.0, support=0, roc_auc_ovr=None)]
    assert record.pr_per_class == [ClassPrecisionRecallCurve("high", [0.2, 1.0], [1.0, 0.0], average_precision=0.8),
                                   ClassPrecisionRecallCurve("low", [], [])]
    written = Evaluation.from_dict(value).to_dict()["candidate"]
    assert written["per_class"] == per_class and written["pr_per_class"] == curves
    assert [list(row) for row in written["per_class"]] == [list(row) for row in per_class]  # same key order


# What retrain-check, infra-validate and deploy wrote before these records (run directories keep it).
OLDER_FILES = [
    (RetrainDecision, {"train": False, "when": "drift", "message": "skipped: no drift since v3 (...)",
                       "production_version": 3, "basis": "traffic", "rows": 120, "alerts": [],
                       "largest": {"column": "age", "measure": "jensen_shannon", "value": 0.01, "threshold": 0.05}}),
    (InfraValidation, {"passed": True, "protocols": ["rest-v2", "grpc"], "warnings": [], "rows": 64,
                       "startup_seconds": 2.31, "latency_ms": {"rest-v2": 12.5, "grpc": 9.1},
                       "max_abs_difference": {"rest-v2": 0.0, "grpc": 0.0}, "reason": "model server answered ...",
                       "sklearn_agreement": {"rows": 4000, "max_abs_difference": 2e-7, "class_flips": 0,
                                             "tolerance": 1e-5, "max_class_flips": None}}),
    (InfraValidation, {"passed": False, "protocols": ["rest-v2", "grpc"], "warnings": [],
                       "reason": "model server did not become ready: timeout"}),
    (DeployResult, {"target": "local", "version": 2, "aliases": {"production": {"version": 2}},
                    "detail": "production -> v2", "promoted": True}),
]


@pytest.mark.parametrize("kind, stored", OLDER_FILES, ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_the_untagged_json_of_runs_from_before_these_records_reads_the_same(kind, stored):
    record = kind.from_dict(json.loads(json.dumps(stored)))
    assert record.extra == {}  # every key it had is a field now
    assert record.to_dict(tagged=False) == stored


def test_the_metadata_of_versions_registered_before_the_record_reads_the_same():
    # What register and the registry wrote before (untagged; binary versions had no task), as stored:
    # data as ingest's lineage plus the split's rows, features as the spec's columns and labels.
    stored = {"candidate_id": "lr", "family": "logistic_regression", "params": {"C": 1.0},
              "validation_metrics": {"roc_auc": 0.7}, "test_metrics": {"roc_auc": 0.71},
              "data": {"source": "builtin", "rows": 20000, "fingerprint": "sha256:ab", "window": None, "notes": [],
                       "split_rows": {"test": 4000}},
              "gate": {"passed": True, "reasons": ["no champion yet"]}, "replaced_champion": None,
              "pipeline_run_id": "run-1", "code_version": "0.1.0", "champion_test_metrics": None,
              "prediction_profile": {"edges": [0.5], "shares": [0, 1, 0, 0]},
              "features": {"numeric": ["age"], "categorical": ["region"], "target": "y", "positive_label": 1,
                           "negative_label": 0},
              "model_name": "m", "version": 1, "created_at": "2026-01-01T00:00:00+00:00", "sha": "x"}
    record = VersionMetadata.from_dict(stored)
    assert (record.version, record.replaced_champion, record.task, record.extra) == (1, None, None, {"sha": "x"})
    assert record.lineage.fingerprint == "sha256:ab" and record.data and record.data.split_rows == {"test": 4000}
    assert record.features and record.features.positive_label == 1 and record.binary_labels == (0, 1)
    assert record.gate == GateVerdict(True, ["no champion yet"])
    assert record.prediction_profile == NumericProfile(edges=[0.5], shares=[0, 1, 0, 0])
    # Written back, it says the same: a binary version still has no multiclass fields.
    assert record.to_dict(tagged=False) == stored


def test_an_older_multiclass_version_s_metadata_reads_its_classes_and_per_class_metrics_typed():
    # As register wrote it before the record (untagged) and before ingest kept notes: the labels are
    # null for a multiclass model, its class order and per-class test metrics are recorded.
    stored = {"candidate_id": "rf", "family": "random_forest", "params": {}, "validation_metrics": {},
              "test_metrics": {"roc_auc_ovr_macro": 0.88}, "task": "multiclass",
              "data": {"source": "iris.csv", "rows": 150, "fingerprint": "sha256:cd", "window": None,
                       "split_rows": {"test": 30.0}},
              "gate": {"passed": True, "reasons": []}, "prediction_profile": None,
              "features": {"numeric": ["petal"], "categorical": [], "target": "species", "positive_label": None,
                           "negative_label": None, "task": "multiclass", "classes": ["setosa", "virginica"]},
              "per_class_test_metrics": [{"class": "setosa", "precision": 1.0, "recall": 1.0, "f1": 1.0,
                                          "support": 10, "roc_auc_ovr": 1.0}]}
    record = VersionMetadata.from_dict(stored)
    assert record.features and record.features.task == "multiclass"
    assert record.features.classes == ["setosa", "virginica"] and record.features.positive_label is None
    assert record.per_class_test_metrics and record.per_class_test_metrics[0].class_label == "setosa"
    assert record.data and record.data.split_rows == {"test": 30} and record.lineage.notes is None
    written = record.to_dict(tagged=False)
    assert written["features"] == stored["features"] and written["per_class_test_metrics"] == \
        stored["per_class_test_metrics"]
    # A key the older file lacked is written with its default: the notes ingest did not keep then.
    assert written["data"] == {**stored["data"], "split_rows": {"test": 30}, "notes": None}


def test_an_older_data_schema_s_numeric_profile_reads_typed():
    # Format 0: the untagged data_schema.json of Tollgate before records, marked {"format": 1}.
    stored = {"format": 1, "rows": 10, "target": "y", "positive_label": 1, "label": {"shares": {"1": 0.5}},
              "columns": [{"name": "age", "role": "feature", "dtype": "float64", "family": "numeric",
                           "null_fraction": 0.0, "profile": {"edges": [30.0], "shares": [0.5, 0.5, 0.0]}}]}
    column = DataSchema.from_dict(stored).columns[0]
    assert column.profile == NumericProfile(edges=[30.0], shares=[0.5, 0.5, 0.0])
    assert column.to_dict()["profile"] == stored["columns"][0]["profile"]


def test_data_lineage_reads_ingest_s_metadata_with_whole_counts():
    # KFP artifact metadata is a protobuf Struct: 32561 rows arrive as 32561.0.
    lineage = DataLineage.from_metadata({"source": "a.csv", "rows": 32561.0, "fingerprint": "f", "window": None,
                                         "other": 1})
    assert lineage == DataLineage(source="a.csv", rows=32561, fingerprint="f")
    assert lineage.to_dict() == {"source": "a.csv", "rows": 32561, "fingerprint": "f", "window": None, "notes": None}
    # A version's metadata keeps it beside the split's counts, in one object; read back, it is the same lineage.
    stored = VersionMetadata(data=TrainingData(lineage, split_rows={"test": 900})).to_dict()
    assert stored["data"] == {**lineage.to_dict(), "split_rows": {"test": 900}}
    metadata = VersionMetadata.from_dict(stored)
    assert metadata.lineage == lineage and isinstance(metadata.lineage.rows, int)


def test_infra_validation_leaves_out_what_was_not_measured():
    blocked = InfraValidation(passed=False, reason="model server did not become ready: timeout")
    assert blocked.to_dict(tagged=False) == {"passed": False, "reason": "model server did not become ready: timeout",
                                             "protocols": [], "warnings": []}


def test_keys_a_reader_does_not_know_are_kept_and_written_back():
    value = EXAMPLES[4].to_dict()
    value["candidate"]["importance_bound"] = {"features_permuted": 200, "features": 10_000}
    record = Evaluation.from_dict(value)
    assert record.candidate.extra == {"importance_bound": {"features_permuted": 200, "features": 10_000}}
    assert record.to_dict()["candidate"]["importance_bound"]["features"] == 10_000


def test_a_feature_spec_with_an_unknown_field_is_refused_not_trimmed():
    value = EXAMPLES[0].to_dict()
    value["drop_first"] = True  # a newer spec field would change what the model reads
    with pytest.raises(RecordError, match="drop_first"):
        FeatureSpec.from_dict(value)


def test_validation_report_keeps_passed_and_drifted_derived_from_its_findings():
    report = EXAMPLES[3]
    assert report.passed and report.drifted_columns == ["age"]
    blocked = ValidationReport(anomalies=[Anomaly("x", "dtype_change", "object", "float64", True)])
    assert not ValidationReport.from_json(blocked.to_json()).passed
    assert "validation.severity.dtype_change: warning would allow it" in blocked.failure_message()


def test_reading_records_imports_neither_pandas_nor_scikit_learn():
    """select, gate and register read records only: they must not pay for pandas or scikit-learn."""
    code = ("import sys; from tollgate.records import Evaluation, Decision, Selection; "
            "print(sorted(m for m in ('pandas', 'sklearn', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fairness_records_are_typed_in_the_evaluation_and_written_back_as_they_were_read():
    # A multiclass record is one-vs-rest for a class ("class" on disk); keys a reader does not know stay.
    stored = {"groups": [{"group": "x", "count": 40, "positives": 12, "selection_rate": 0.3, "tpr": 0.5, "fpr": 0.2,
                          "bounded": True, "selection_ratio_to_highest": 1.0, "ci": [0.2, 0.4]}],
              "min_group_size": 30, "min_group_positives": 20, "unmeasured": {"disparate_impact": "one group"},
              "disparate_impact": None, "equal_opportunity_difference": 0.0, "bins": None, "threshold": None,
              "class": "high", "method": "one-vs-rest"}
    value = EXAMPLES[4].to_dict()
    value["candidate"]["fairness"] = {"group (class high)": stored}
    evaluation = Evaluation.from_dict(value)
    record = evaluation.candidate.fairness["group (class high)"]
    assert isinstance(record, AttributeFairness) and record.measured_class == "high"
    assert record.groups[0].tpr == 0.5 and record.groups[0].extra == {"ci": [0.2, 0.4]}
    assert record.measure("equal_opportunity_difference") == 0.0 and record.unmeasured["disparate_impact"]
    assert evaluation.to_dict()["candidate"]["fairness"]["group (class high)"] == stored
    assert evaluation.candidate.fairness_measures() == {
        "group (class high)": {"disparate_impact": None, "equal_opportunity_difference": 0.0}}
    with pytest.raises(KeyError, match="not a fairness measure"):
        record.measure("accuracy")


def test_a_newer_registry_file_is_a_one_line_tollgate_error_and_nulls_read_as_not_recorded():
    # The CLI's guard prints a TollgateError as one line; a record from a newer Tollgate must be one.
    from tollgate.errors import TollgateError
    from tollgate.registry.base import ModelVersion

    newer = ModelVersion("m", 4, "/r/m/v4", {"record": "version_metadata", "record_version": 9})
    with pytest.raises(TollgateError, match="format 9, written by a newer Tollgate"):
        newer.record  # noqa: B018 (the property reads the file)
    hand_edited = VersionMetadata.from_dict({"features": None, "data": None, "test_metrics": None, "version": 2})
    assert (hand_edited.features, hand_edited.data, hand_edited.test_metrics) == (None, None, {})
    assert hand_edited.binary_labels == (0, 1) and hand_edited.lineage == DataLineage()
    # Not recorded is written as it always was: an empty object.
    assert {k: hand_edited.to_dict()[k] for k in ("features", "data", "gate")} == {"features": {}, "data": {},
                                                                                   "gate": {}}
    assert DataSchema.from_dict({"rows": 3, "columns": None}).columns == []


@pytest.mark.parametrize("record", [r for r in EXAMPLES if not isinstance(r, FeatureSpec)],
                         ids=lambda r: type(r).__name__)
def test_every_record_keeps_a_key_from_a_newer_tollgate_and_writes_it_back(record):
    # A newer Tollgate may add a field without a new format; an older step that reads the record
    # and passes it on must neither crash nor drop it.
    value = record.to_dict()
    value["added_later"] = {"by": "a newer tollgate"}
    read = type(record).from_dict(value)
    assert read.to_dict()["added_later"] == {"by": "a newer tollgate"}
    assert {k: v for k, v in read.to_dict().items() if k != "added_later"} == record.to_dict()


def test_a_key_added_inside_a_record_s_entries_is_read_past_not_a_crash():
    report = ValidationReport.from_dict(_with_key_in_each(EXAMPLES[3].to_dict(), "anomalies", "drift"))
    assert report == EXAMPLES[3]
    decision = Decision.from_dict(_with_key_in_each(EXAMPLES[7].to_dict(), "rules"))
    assert decision == EXAMPLES[7]
    selection = Selection.from_dict(_with_key_in_each(EXAMPLES[2].to_dict(), "leaderboard"))
    assert selection == EXAMPLES[2]
    value = EXAMPLES[4].to_dict()
    value["champion"]["calibration"] = 0.02
    evaluation = Evaluation.from_dict(value)
    assert evaluation.champion is not None and evaluation.champion.extra == {"calibration": 0.02}
    assert evaluation.to_dict()["champion"]["calibration"] == 0.02


def _with_key_in_each(value: dict, *lists: str) -> dict:
    for name in lists:
        assert value[name], name  # the example must have entries, or the test proves nothing
        for entry in value[name]:
            entry["added_later"] = True
    return value


def test_the_input_schema_reads_typed_and_writes_back_the_same_json():
    binary = {"columns": [{"name": "age", "role": "numeric", "dtype": "int64", "nullable": False},
                          {"name": "region", "role": "categorical", "dtype": "string", "nullable": True,
                           "categories": ["north", "south"]}],
              "decision_threshold": 0.35}
    inputs = ModelInputs.from_dict(binary)
    assert inputs.names == ["age", "region"] and inputs.column("region").categories == ["north", "south"]
    assert inputs.decision_threshold == 0.35 and not inputs.multiclass
    # The served contract is written exactly as read: same keys, same order.
    assert json.dumps(inputs.to_dict()) == json.dumps(binary)
    multiclass = {"columns": binary["columns"], "task": "multiclass", "classes": ["high", "low"], "added_later": 1}
    inputs = ModelInputs.from_dict(multiclass)
    assert inputs.multiclass and inputs.classes == ["high", "low"] and inputs.decision_threshold is None
    assert json.dumps(inputs.to_dict()) == json.dumps(multiclass)
    for broken, words in (([], "JSON list"), ({"columns": "age"}, "without a 'columns' list"),
                          ({"columns": [{"name": "age", "dtype": "int64"}]}, "column 0 lacks role")):
        with pytest.raises(RecordError, match=words):
            ModelInputs.from_dict(broken)
