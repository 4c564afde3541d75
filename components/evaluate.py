"""Evaluate component: test metrics of the candidate and of the current champion."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate(settings_json: str, best: Input[Model], test: Input[Dataset], features: Input[Artifact],
             registry_uri: str, model_name: str, metrics: Output[Metrics],
             classification: Output[ClassificationMetrics], evaluation: Output[Artifact]) -> float:
    """Score candidate and champion on the same test rows by running their ONNX graphs, the bytes that
    are served (nothing is unpickled); returns the candidate's headline metric (ROC AUC when binary)."""
    import os

    from tollgate.artifacts import read_frame, read_record, write_record
    from tollgate.records import FeatureSpec, Selection
    from tollgate.registry import open_registry
    from tollgate.settings import EvaluateSettings
    from tollgate.steps.evaluate import kfp_view, run_evaluate
    from tollgate.steps.select import SELECTION_FILE

    record = run_evaluate(best.path, read_record(Selection, os.path.join(best.path, SELECTION_FILE)),
                          read_record(FeatureSpec, features.path), read_frame(test.path),
                          EvaluateSettings.from_json(settings_json), open_registry(registry_uri), model_name)
    write_record(record, evaluation.path)
    shown = kfp_view(record)
    for name, value in shown.scalars.items():
        metrics.log_metric(name, value)
    classification.log_confusion_matrix(*shown.confusion)
    if shown.roc is not None:
        classification.log_roc_curve(*shown.roc)
    evaluation.metadata.update(shown.metadata)
    return shown.headline
