"""Evaluate component: test metrics of the candidate and of the current champion."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate(best: Input[Model], test: Input[Dataset], features: Input[Artifact], registry_uri: str,
             model_name: str, fairness_json: str, metrics: Output[Metrics],
             classification: Output[ClassificationMetrics], evaluation: Output[Artifact]) -> float:
    """Score candidate and champion on the same test rows (with curves, feature importance and
    group fairness for the report) by running their ONNX graphs, the bytes that are served;
    returns the candidate's ROC AUC (macro one-vs-rest for a multiclass model). Nothing is unpickled."""
    import json
    import os
    import tempfile

    import pandas as pd

    from tollgate.registry import ONNX_FILE, SCHEMA_FILE, open_registry
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.evaluate import evaluate_champion, evaluate_model
    from tollgate.steps.preprocess import FeatureSpec

    with open(features.path) as handle:
        spec = FeatureSpec.from_dict(json.load(handle))
    test_frame = pd.read_parquet(test.path)
    classes = spec.classes if spec.multiclass else None
    candidate = evaluate_model(OnnxModel.from_file(os.path.join(best.path, ONNX_FILE), spec.schema), test_frame,
                               spec.columns, fairness=json.loads(fairness_json), classes=classes)
    for name, value in candidate["metrics"].items():
        metrics.log_metric(name, value)
    for attribute, record in candidate.get("fairness", {}).items():
        for measure in ("disparate_impact", "equal_opportunity_difference"):
            if record[measure] is not None:
                metrics.log_metric(f"{attribute}_{measure}", record[measure])
    if classes is not None:
        # KFP's ClassificationMetrics: the k x k matrix, rows and columns in the model's class order.
        classification.log_confusion_matrix([str(c) for c in classes], candidate["confusion_matrix"])
    else:
        classification.log_confusion_matrix(["negative", "positive"], candidate["confusion_matrix"])
        roc = candidate["roc"]
        classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])

    registry = open_registry(registry_uri)
    champion_version = registry.champion(model_name)
    champion = None
    if champion_version is not None:
        with tempfile.TemporaryDirectory() as tmp:
            # Verified copy: a file that fails its sha256 stops the run here, before it is parsed.
            registry.download_champion(model_name, tmp, champion_version.version)
            with open(os.path.join(tmp, SCHEMA_FILE)) as handle:
                schema = json.load(handle)
            graph = os.path.join(tmp, ONNX_FILE)
            try:
                champion_model = OnnxModel.from_file(graph, schema)
            except FileNotFoundError:  # no run can compare against it: say how to get past it
                raise registry.unreadable_champion(
                    model_name, champion_version.version,
                    f"it has no {ONNX_FILE} (registered before the ONNX contract), so the gate cannot score "
                    "what it serves") from None
            except Exception as exc:
                raise registry.unreadable_champion(model_name, champion_version.version,
                                                   f"{ONNX_FILE} does not load: {type(exc).__name__}: {exc}") from exc
            else:
                champion = evaluate_champion(champion_model, schema, test_frame, classes=classes)
        champion["version"] = champion_version.version
    record = {"candidate": {**dict(best.metadata), **candidate}, "champion": champion}
    with open(evaluation.path, "w") as handle:
        json.dump(record, handle, indent=2, default=str)
    headline = "roc_auc_ovr_macro" if classes is not None else "roc_auc"
    evaluation.metadata.update({f"candidate_{headline}": candidate["metrics"][headline],
                                "champion_version": champion_version.version if champion_version else None})
    return candidate["metrics"][headline]
