"""Train: fit one Pipeline for one grid point (tollgate.steps.candidates expands the grid) and export it to ONNX.

Every candidate leaves train as ``model.onnx`` (what evaluate scores, infra-validation
serves and the registry publishes) plus ``model.joblib`` (the scikit-learn object, a
training artifact nobody in the gated path unpickles). The graph is checked against the
Pipeline on the validation rows before it leaves: a graph that converts but answers
differently fails the task here, not in production.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tollgate.artifacts import write_record
from tollgate.errors import TollgateError
from tollgate.records import CANDIDATE_FILE, CandidateResult, OnnxExportCheck

# The grid and the model families live in tollgate.steps.candidates: the runner expands the grid
# without pandas or scikit-learn.
from tollgate.steps.candidates import CandidateSpec, estimator_class
from tollgate.steps.export import ExportError, export_onnx, make_float32_exact, probability_agreement
from tollgate.steps.preprocess import LABEL, FeatureSpec, build_preprocessor

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from tollgate.config import ModelFamily

# scikit-learn and the metrics (tollgate.steps.evaluate) are imported where a candidate is
# built and scored: infra-validate reads this module's file names only.

# Largest |ONNX - scikit-learn| probability difference accepted at export, on the validation rows.
# float32 arithmetic gives ~1e-7; anything near this bound means the graph computes something else.
EXPORT_TOLERANCE = 1e-4
# The Pipeline's [n, 2] ([n, k] multiclass) probabilities on the test split, beside model.onnx in the candidate's
# directory: infra-validation's scikit-learn reference, read with numpy (allow_pickle=False).
REFERENCE_FILE = "sklearn_test_probabilities.npy"

# Tree ensembles do not need scaled inputs; skipping the scaler saves time on large tables.
_NEEDS_SCALING: frozenset[ModelFamily] = frozenset({"logistic_regression"})


@dataclass
class TrainedCandidate:
    """A fitted candidate and how it did on the validation split."""

    candidate_id: str
    family: str
    params: dict[str, Any]
    model: Pipeline
    validation_metrics: dict[str, float]
    fit_seconds: float
    onnx: bytes                      # the exported graph: what is gated and served
    export_check: OnnxExportCheck    # the graph against the Pipeline on the validation rows
    reference_proba: np.ndarray | None = None


def build_model(spec: CandidateSpec, features: FeatureSpec) -> Pipeline:
    """The full serving Pipeline for one candidate: preprocessing plus estimator."""
    from sklearn.pipeline import Pipeline

    family = spec.family
    try:
        estimator = estimator_class(family)(**spec.params)
    except TypeError as exc:
        raise TollgateError(f"candidate {spec.candidate_id}: bad parameter for {family}: {exc}") from exc
    return Pipeline([
        ("preprocess", build_preprocessor(features, scale=family in _NEEDS_SCALING)),
        ("model", estimator),
    ])


def train_candidate(train: pd.DataFrame, validation: pd.DataFrame, spec: CandidateSpec,
                    features: FeatureSpec, reference: pd.DataFrame | None = None) -> TrainedCandidate:
    """Fit one candidate on the training split, export it to ONNX and score the *graph* on the
    validation split.

    ``reference`` (the test split) gets the Pipeline's own probabilities
    (``reference_proba``), which infra-validation compares the served graph with: it never
    unpickles the Pipeline itself. Raises :class:`ExportError` when the candidate cannot be
    exported, or its graph disagrees with the Pipeline.
    """
    from tollgate.serving.runtime import OnnxModel
    from tollgate.serving.schema import model_inputs
    from tollgate.steps.evaluate import classification_metrics, multiclass_metrics

    model = build_model(spec, features)
    started = time.perf_counter()
    model.fit(model_inputs(train, features.schema), train[LABEL])
    if features.multiclass and len(model.classes_) != len(features.classes):
        # Splitting guarantees every class in train; this guards the probability columns' meaning.
        raise TollgateError(f"candidate {spec.candidate_id} learned {len(model.classes_)} classes, the data has "
                            f"{len(features.classes)}: the probability columns would not match the class order")
    fit_seconds = time.perf_counter() - started
    make_float32_exact(model)
    onnx_bytes = export_onnx(model, features.schema, spec.family, spec.candidate_id)
    validation_inputs = model_inputs(validation, features.schema)
    try:
        graph = OnnxModel(onnx_bytes, features.schema)
        graph_proba = graph.predict_proba(validation)
    except Exception as exc:  # converted, but the graph does not run: same verdict as not converting
        raise ExportError(f"candidate {spec.candidate_id} ({spec.family}): the exported ONNX graph fails "
                          f"in onnxruntime: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}") from exc
    check = probability_agreement(graph_proba, model.predict_proba(validation_inputs), features.decision_threshold)
    if not check.max_abs_difference <= EXPORT_TOLERANCE:
        raise ExportError(f"candidate {spec.candidate_id} ({spec.family}): the exported ONNX graph answers "
                          f"differently from the Pipeline (max probability difference "
                          f"{check.max_abs_difference:.3g} on {check.rows} validation rows; allowed "
                          f"{EXPORT_TOLERANCE:g}); some step converts without its full behaviour")
    if features.multiclass:
        metrics = multiclass_metrics(validation[LABEL].to_numpy(), graph_proba)
    else:
        metrics = classification_metrics(validation[LABEL].to_numpy(), graph_proba[:, 1], features.decision_threshold)
    reference_proba = None
    if reference is not None and len(reference):
        reference_proba = model.predict_proba(model_inputs(reference, features.schema)).astype(np.float64)
    return TrainedCandidate(spec.candidate_id, spec.family, spec.params, model, metrics, fit_seconds,
                            onnx=onnx_bytes, export_check=OnnxExportCheck(validation=check), reference_proba=reference_proba)


def save_candidate(result: TrainedCandidate, directory: str | Path) -> None:
    """Write ``model.onnx``, ``model.joblib`` and (with a reference split) the Pipeline's test probabilities."""
    import joblib

    from tollgate.registry import MODEL_FILE, ONNX_FILE

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ONNX_FILE).write_bytes(result.onnx)
    joblib.dump(result.model, directory / MODEL_FILE)
    if result.reference_proba is not None:
        np.save(directory / REFERENCE_FILE, result.reference_proba, allow_pickle=False)


def run_train(grid_point: CandidateSpec, train: pd.DataFrame, validation: pd.DataFrame,
              test: pd.DataFrame | None, features: FeatureSpec, model_dir: str | Path) -> CandidateResult:
    """Train as the DAG runs it: fit one grid point, save its directory (``model.onnx``, ``model.joblib``,
    the test-split reference probabilities) and the :class:`~tollgate.records.CandidateResult` that
    select reads, ``candidate.json``."""
    result = train_candidate(train, validation, grid_point, features, reference=test)
    save_candidate(result, model_dir)
    record = CandidateResult(candidate_id=result.candidate_id, family=result.family, params=result.params,
                             validation_metrics=result.validation_metrics, fit_seconds=round(result.fit_seconds, 3),
                             onnx_export=result.export_check, task=features.task)
    write_record(record, Path(model_dir) / CANDIDATE_FILE)
    return record
