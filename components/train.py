"""Train component: fit one candidate and export it to ONNX; it runs once per grid point inside ParallelFor."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def train(candidate: dict, train: Input[Dataset], validation: Input[Dataset], test: Input[Dataset],
          features: Input[Artifact], model: Output[Model], metrics: Output[Metrics]) -> float:
    """Fit one grid point; the model artifact is a directory holding ``model.onnx`` (gated and served),
    ``model.joblib`` (training artifact), the Pipeline's test-split probabilities (infra-validation's
    reference; test rows are never used for fitting or selection) and ``candidate.json`` (select's input)."""
    from tollgate.artifacts import read_frame, read_record
    from tollgate.records import FeatureSpec
    from tollgate.steps.candidates import grid_point
    from tollgate.steps.train import run_train

    spec = read_record(FeatureSpec, features.path)
    result = run_train(grid_point(candidate), read_frame(train.path), read_frame(validation.path),
                       read_frame(test.path, columns=spec.columns), spec, model.path)
    for name, value in result.validation_metrics.items():
        metrics.log_metric(f"validation_{name}", value)
    model.metadata.update(result.kfp_metadata())
    return float(result.fit_seconds)
