"""Register: publish the selected model as a new immutable registry version."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tollgate import __version__
from tollgate.records import (
    MULTICLASS,
    DataLineage,
    DataSchema,
    Decision,
    Evaluation,
    FeatureSpec,
    GateVerdict,
    TrainingData,
    VersionMetadata,
)
from tollgate.registry import (
    DATA_SCHEMA_FILE,
    METADATA_FILE,
    MODEL_FILE,
    ONNX_FILE,
    SCHEMA_FILE,
    ModelVersion,
    Registry,
)

# Tests force two runs to overlap: while the file named here exists, register waits (at most
# tollgate.holds.HOLD_SECONDS). Unset in normal use.
HOLD_ENV = "TOLLGATE_TEST_HOLD_REGISTER"


def hold_for_tests() -> None:
    """Wait while ``$TOLLGATE_TEST_HOLD_REGISTER`` names an existing file (a test's barrier)."""
    from tollgate.holds import hold_while_file_exists

    hold_while_file_exists(HOLD_ENV)


def code_version() -> str:
    """Tollgate's version plus the git commit: baked into images as TOLLGATE_GIT_SHA, else asked of git."""
    sha = os.environ.get("TOLLGATE_GIT_SHA")
    if not sha:
        try:
            sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 timeout=5, cwd=Path(__file__).parent).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            sha = ""
    return f"{__version__}+{sha}" if sha else __version__


# What a version keeps of a trained candidate's directory: the graph that is gated and served, and
# the fitted scikit-learn Pipeline (a training artifact). README, "The registry", lists the rest.
REGISTERED_MODEL_FILES = (ONNX_FILE, MODEL_FILE)


def register_model(registry: Registry, model_name: str, model_dir: Path, input_schema: dict[str, Any],
                   metadata: VersionMetadata, data_schema: DataSchema | None = None) -> ModelVersion:
    """Write the input schema (and the training data's schema) beside the model file and publish
    them with the metadata; later runs validate their data against ``data_schema.json``."""
    (model_dir / SCHEMA_FILE).write_text(json.dumps(input_schema, indent=2))
    if data_schema is not None:
        (model_dir / DATA_SCHEMA_FILE).write_text(data_schema.to_json())
    stale = model_dir / METADATA_FILE
    if stale.exists():
        stale.unlink()
    return registry.register(model_name, model_dir, metadata.to_dict())


def version_metadata(evaluation: Evaluation, decision: Decision, spec: FeatureSpec, data: DataLineage,
                     run_id: str) -> VersionMetadata:
    """The version's ``metadata.json``: the candidate, its test metrics, the data it was trained
    on (``data``: ingest's :class:`~tollgate.records.DataLineage`), the gate's verdict and
    the champion it was compared with (deploy promotes only over that one)."""
    candidate, champion = evaluation.candidate, evaluation.champion
    return VersionMetadata(
        candidate_id=candidate.candidate_id, family=candidate.family, params=candidate.params,
        validation_metrics=candidate.validation_metrics, test_metrics=candidate.metrics,
        data=TrainingData(data, split_rows={"test": candidate.rows}),
        gate=GateVerdict(decision.passed, decision.reasons),
        replaced_champion=champion.version if champion else None, pipeline_run_id=run_id,
        code_version=code_version(), champion_test_metrics=champion.metrics if champion else None,
        prediction_profile=candidate.prediction_profile, features=spec.served_features(),
        task=MULTICLASS if spec.multiclass else None,
        per_class_test_metrics=candidate.per_class if spec.multiclass else None)


def run_register(registry: Registry, model_name: str, candidate_dir: str | Path, spec: FeatureSpec,
                 evaluation: Evaluation, decision: Decision, data: DataLineage, data_schema: DataSchema,
                 run_id: str) -> ModelVersion:
    """Register as the DAG runs it: the candidate's model files (:data:`REGISTERED_MODEL_FILES`) plus
    its input schema, the training data's schema and :func:`version_metadata`, published as the next
    version. The run's working files beside them (the candidate and selection records, the
    scikit-learn reference probabilities) stay with the run's artifacts."""
    import shutil
    import tempfile

    metadata = version_metadata(evaluation, decision, spec, data, run_id)
    hold_for_tests()
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model"
        staged.mkdir()
        for name in REGISTERED_MODEL_FILES:
            if (Path(candidate_dir) / name).is_file():  # the registry says which files a version must have
                shutil.copy2(Path(candidate_dir) / name, staged / name)
        return register_model(registry, model_name, staged, spec.schema, metadata, data_schema=data_schema)
