"""What each task shows KFP as its artifacts' metadata, and that the components take it from the records.

The keys and values are those the tasks have always written: the KFP UI lists them, and
register, the report and ``tollgate run``'s summary read the data's lineage back from the raw
dataset's metadata (:meth:`DataLineage.from_metadata`). Each component writes what its record
(or step) gives, so the metadata is defined, and tested, in one place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tollgate.records import (
    Anomaly,
    CandidateResult,
    DataLineage,
    Decision,
    DeployResult,
    FeatureDrift,
    FeatureSpec,
    InfraValidation,
    RetrainDecision,
    Rule,
    Selection,
    SklearnAgreement,
    ValidationReport,
)
from tollgate.steps.ingest import IngestResult
from tollgate.steps.preprocess import SplitPlan
from tollgate.steps.report import kfp_metadata as report_metadata

COMPONENTS = Path(__file__).resolve().parent.parent / "components"

WINNER = CandidateResult(candidate_id="hgb[max_leaf_nodes=15]", family="hist_gradient_boosting",
                         params={"max_leaf_nodes": 15}, validation_metrics={"roc_auc": 0.81}, task="multiclass")
BLOCKED = Decision(passed=False, reasons=["roc_auc fell below the champion's"],
                   rules=[Rule("max_degradation", "roc_auc", False, 0.7, ">= 0.79", "worse")], champion_version=2)
CHECKS = ValidationReport(anomalies=[Anomaly("age", "out_of_range", "5%", "<= 1%", blocking=False),
                                     Anomaly("income", "missing_column", "absent", "present", blocking=True)],
                          drift=[FeatureDrift("age", "numeric", "jensen_shannon", 0.2, 0.05, [], [], []),
                                 FeatureDrift("income", "numeric", "jensen_shannon", 0.01, 0.05, [], [], [])])


@pytest.mark.parametrize("record, metadata", [
    (FeatureSpec(target="y", positive_label=1, negative_label=0, numeric=["a", "b", "c"], categorical=["d"]),
     {"numeric": 3, "categorical": 1, "task": "binary"}),
    (WINNER, {"candidate_id": "hgb[max_leaf_nodes=15]", "family": "hist_gradient_boosting", "task": "multiclass"}),
    (Selection(winner=WINNER, selection_metric="roc_auc_ovr_macro"),
     {"candidate_id": "hgb[max_leaf_nodes=15]", "family": "hist_gradient_boosting",
      "selection_metric": "roc_auc_ovr_macro"}),
    (CHECKS, {"passed": False, "anomalies": 2, "warnings": 1, "drifted": ["age"]}),
    (BLOCKED, {"passed": False, "reasons": ["roc_auc fell below the champion's"]}),
    (RetrainDecision(train=True, when="drift", message="drift in age since v3", production_version=3),
     {"train": True, "message": "drift in age since v3"}),
    (InfraValidation(passed=True, protocols=["rest-v2", "grpc"], warnings=["slow start"], rows=64,
                     sklearn_agreement=SklearnAgreement(rows=4000, max_abs_difference=1e-7, class_flips=0,
                                                        tolerance=1e-5, max_class_flips=2)),
     {"passed": True, "warnings": ["slow start"], "sklearn_agreement": {
         "rows": 4000, "max_abs_difference": 1e-7, "class_flips": 0, "tolerance": 1e-5, "max_class_flips": 2}}),
    (InfraValidation(passed=False, reason="the server did not start"),
     {"passed": False, "warnings": [], "sklearn_agreement": None}),
    (DeployResult(target="kserve", version=4, aliases={"production": {"version": 3}}, detail="champion changed",
                  promoted=False),
     {"target": "kserve", "version": 4, "promoted": False}),
], ids=lambda value: type(value).__name__ if not isinstance(value, dict) else "")
def test_each_record_gives_the_metadata_its_task_has_always_shown(record, metadata):
    assert record.kfp_metadata() == metadata


def test_the_raw_dataset_carries_the_lineage_that_register_and_the_summary_read_back():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    result = IngestResult(frame=frame, source="s3://data/loans.parquet", fingerprint="sha256:ab12",
                          window=("2026-11-20", "2026-11-21"), notes=["2 rows without a label dropped"])
    metadata = result.kfp_metadata()
    assert metadata == {"source": "s3://data/loans.parquet", "rows": 3, "fingerprint": "sha256:ab12",
                        "window": ["2026-11-20", "2026-11-21"], "notes": ["2 rows without a label dropped"],
                        "columns": 2}
    # KFP stores metadata as a protobuf Struct (every number a float); the lineage still reads back whole.
    through_kfp = {key: float(value) if isinstance(value, int) else value for key, value in metadata.items()}
    assert DataLineage.from_metadata(through_kfp) == result.lineage()


def test_each_split_shows_its_row_count():
    plan = SplitPlan(rows={"train": np.arange(6), "validation": np.arange(6, 8), "test": np.arange(8, 10)},
                     columns={name: ["x"] for name in ("train", "validation", "test")}, label=np.zeros(10, np.int64))
    assert [plan.kfp_metadata(name) for name in ("train", "validation", "test")] == [{"rows": 6}, {"rows": 2},
                                                                                     {"rows": 2}]


def test_the_report_shows_the_gate_verdict_and_the_anomaly_count():
    assert report_metadata(CHECKS, BLOCKED) == {"gate": "blocked", "anomalies": 2}
    passed = Decision(passed=True, reasons=[])
    assert report_metadata(ValidationReport(), passed) == {"gate": "passed", "anomalies": 0}
    assert (BLOCKED.outcome, passed.outcome) == ("blocked", "passed")  # also the report task's output


def _step_functions_called(function: ast.FunctionDef) -> list[str]:
    """Names of the functions imported from tollgate.steps.* that ``function`` calls, in call order."""
    imported = {alias.asname or alias.name for node in ast.walk(function)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tollgate.steps.")
                for alias in node.names}
    return [node.func.id for node in ast.walk(function)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported]


@pytest.mark.parametrize("path", sorted(p for p in COMPONENTS.glob("*.py") if p.stem != "__init__"),
                         ids=lambda p: p.stem)
def test_a_component_calls_one_step_and_takes_its_metadata_from_it(path):
    # A component reads its inputs, calls ONE step entry point (run_<step>), writes the record and
    # hands KFP the metadata the record (or step) defines: no metadata dict is built in a component.
    function = next(node for node in ast.parse(path.read_text()).body
                    if isinstance(node, ast.FunctionDef) and node.name == path.stem)
    called = _step_functions_called(function)
    entry_points = [name for name in called if name.startswith("run_")]
    # Besides it: decoding the ParallelFor item (train) and what the KFP UI shows (kfp_*).
    others = [name for name in called if not name.startswith(("run_", "kfp_")) and name != "grid_point"]
    assert len(entry_points) == 1 and not others, called
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update" \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "metadata":
            (argument,) = node.args  # record.kfp_metadata(), or evaluate's kfp_view(...).metadata
            assert isinstance(argument, ast.Call | ast.Attribute) and not ast.unparse(argument).startswith("dict("), \
                f"{path.stem} builds metadata inline: {ast.unparse(node)}"
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assert not any(isinstance(t, ast.Subscript) and "metadata" in ast.unparse(t.value) for t in targets), \
                f"{path.stem} sets metadata by key: {ast.unparse(node)}"
