"""Train component: fit one candidate and export it to ONNX; it runs once per grid point inside ParallelFor."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def train(candidate: dict, train: Input[Dataset], validation: Input[Dataset], test: Input[Dataset],
          features: Input[Artifact], model: Output[Model], metrics: Output[Metrics]) -> float:
    """Fit one grid point; the model artifact is a directory holding ``model.onnx`` (gated and served),
    ``model.joblib`` (training artifact) and the Pipeline's test-split probabilities (infra-validation's
    reference; the test rows are never used for fitting or selection)."""
    import json

    import pandas as pd

    from tollgate.steps.preprocess import FeatureSpec
    from tollgate.steps.train import save_candidate, train_candidate

    with open(features.path) as handle:
        spec = FeatureSpec.from_dict(json.load(handle))
    grid_point = {"candidate_id": candidate["candidate_id"], "family": candidate["family"],
                  "params": json.loads(candidate["params_json"])}
    result = train_candidate(pd.read_parquet(train.path), pd.read_parquet(validation.path), grid_point, spec,
                             reference=pd.read_parquet(test.path, columns=spec.columns))
    save_candidate(result, model.path)
    for name, value in result.validation_metrics.items():
        metrics.log_metric(f"validation_{name}", value)
    # params as JSON text: artifact metadata is a protobuf Struct, which would turn ints into floats.
    model.metadata.update({"candidate_id": result.candidate_id, "family": result.family,
                           "params_json": json.dumps(result.params), "validation_metrics": result.validation_metrics,
                           "fit_seconds": round(result.fit_seconds, 3), "onnx_export": result.export_check})
    if spec.multiclass:
        model.metadata["task"] = spec.task
    return float(result.fit_seconds)
