"""The JSON the steps write is a contract: deployed model servers and older Tollgate versions read a
version's ``metadata.json``, and run directories keep ``candidate.json`` and the evaluation record.
Whatever types hold these records in memory, the files say exactly what they said before.

``tests/data/records_on_disk.json`` was written by :func:`written_records` (run as
``python -m tests.test_records_on_disk``) on the commit named in its ``"generated_by"`` entry, before
the records' nested values (curves, per-class metrics, importance, profiles, features, gate, data)
became typed; this test writes the same files through the same steps with today's code and requires
the same JSON, and that each file reads back into its record and is written back unchanged.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent / "data" / "records_on_disk.json"
MODEL = "golden"
# Values that depend on the clock or the checkout, not on the code's output format.
VOLATILE_KEYS = {"fit_seconds", "seconds", "created_at", "code_version"}


def _write_version(root: Path, task: str) -> dict[str, Any]:
    """Train, select, evaluate, gate and register one logistic regression on the built-in data
    (``task`` binary or multiclass) through the steps' own entry points; the files they wrote."""
    from tollgate.config import FairnessConfig, ImportanceConfig, load_config
    from tollgate.data.builtin import generate_applicants
    from tollgate.records import DataLineage
    from tollgate.registry import open_registry
    from tollgate.settings import EvaluateSettings
    from tollgate.steps.candidates import CandidateSpec
    from tollgate.steps.evaluate import run_evaluate
    from tollgate.steps.gate import GatePolicy, run_gate
    from tollgate.steps.preprocess import build_feature_spec, split_dataset
    from tollgate.steps.register import run_register
    from tollgate.steps.select import run_select
    from tollgate.steps.train import run_train
    from tollgate.steps.validate import infer_data_schema

    config = load_config(None, {})
    multiclass = task == "multiclass"
    frame = generate_applicants(rows=1500, seed=3, classes=3 if multiclass else 2)
    target = "risk_band" if multiclass else config.data.target
    drop = ["applicant_id", "gender"]  # gender: a sensitive attribute, not a feature
    spec = build_feature_spec(frame, target, config.data.positive_label, drop, config.data.date_column, task=task)
    splits = split_dataset(frame, spec, 0.25, 0.2, 42, extra_columns=["gender"])
    trained_dir, model_dir = root / task / "candidate", root / task / "best"
    run_train(CandidateSpec("lr", "logistic_regression", {"max_iter": 300}),
              splits.train, splits.validation, splits.test, spec, trained_dir)
    selection = run_select([str(trained_dir)], "roc_auc", "roc_auc_ovr_macro", str(model_dir))
    fairness = FairnessConfig(sensitive_attributes=[{"column": "gender"}], classes=["high"] if multiclass else [])
    settings = EvaluateSettings(fairness=fairness, importance=ImportanceConfig(max_rows=300, max_features=6))
    registry = open_registry(str(root / task / "registry"))
    evaluation = run_evaluate(model_dir, selection, spec, splits.test, settings, registry, MODEL)
    decision = run_gate(evaluation, GatePolicy.from_config(config.gate.model_dump()))
    lineage = DataLineage(source="builtin", rows=len(frame), fingerprint="sha256:golden", window=None,
                          notes=["a note from ingest"])
    data_schema = infer_data_schema(frame.drop(columns=drop), target, spec.positive_label)
    version = run_register(registry, MODEL, model_dir, spec, evaluation, decision, lineage, data_schema, "run-1")
    version_dir = Path(version.uri)
    return {"candidate.json": json.loads((model_dir / "candidate.json").read_text()),
            "evaluation": json.loads(evaluation.to_json()),
            "metadata.json": json.loads((version_dir / "metadata.json").read_text()),
            "data_schema.json": json.loads((version_dir / "data_schema.json").read_text())}


def written_records(root: Path) -> dict[str, Any]:
    """The files a binary and a multiclass version leave behind, as parsed JSON."""
    return {task: _write_version(root, task) for task in ("binary", "multiclass")}


def _masked(value: Any, key: str = "") -> Any:
    if key in VOLATILE_KEYS:
        return "<volatile>"
    if isinstance(value, dict):
        return {k: _masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _differences(expected: Any, got: Any, where: str = "", ordered: bool = True) -> list[str]:
    """Where ``got`` differs from ``expected``: keys (and, when ``ordered``, their order), types, and
    values (floats to 1e-9: the last bits of a computed metric are no part of the format)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if (list(expected) != list(got)) if ordered else (set(expected) != set(got)):
            return [f"{where or '/'}: keys {list(got)}, expected {list(expected)}"]
        return [d for k in expected for d in _differences(expected[k], got[k], f"{where}/{k}", ordered)]
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: {len(got)} entries, expected {len(expected)}"]
        return [d for i, (e, g) in enumerate(zip(expected, got, strict=True))
                for d in _differences(e, g, f"{where}[{i}]", ordered)]
    if isinstance(expected, float) and isinstance(got, float):
        return [] if math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-12) else [f"{where}: {got!r}, expected {expected!r}"]
    if type(expected) is not type(got) or expected != got:
        return [f"{where}: {got!r}, expected {expected!r}"]
    return []


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Any]:
    return written_records(tmp_path_factory.mktemp("records"))


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_the_steps_write_the_json_they_wrote_before_the_nested_values_were_typed(written, task):
    golden = json.loads(GOLDEN.read_text())[task]
    for name, expected in golden.items():
        assert _differences(_masked(expected), _masked(written[task][name])) == [], name


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_each_file_reads_into_its_record_and_is_written_back_unchanged(written, task):
    from tollgate.records import CandidateResult, DataSchema, Evaluation, VersionMetadata

    for name, kind in (("candidate.json", CandidateResult), ("evaluation", Evaluation),
                       ("metadata.json", VersionMetadata), ("data_schema.json", DataSchema)):
        stored = written[task][name]
        # The registry writes metadata.json with sorted keys: the order is the writer's, not the record's.
        assert _differences(stored, kind.from_dict(json.loads(json.dumps(stored))).to_dict(), ordered=False) == [], name


if __name__ == "__main__":  # (re)write the golden file: only when the format changes on purpose
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        records = written_records(Path(tmp))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    GOLDEN.write_text(json.dumps({"generated_by": commit, **records}, indent=1) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
