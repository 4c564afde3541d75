"""Infra-validate component: the candidate must load and answer in the real model server before promotion."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def infra_validate(settings_json: str, best: Input[Model], test: Input[Dataset], features: Input[Artifact],
                   report: Output[Artifact]) -> None:
    """Serve the candidate's model.onnx on loopback, query it over REST v2 and gRPC, require answers identical
    to in-process onnxruntime and within tolerance of the scikit-learn Pipeline's saved test probabilities."""
    import os

    from tollgate.artifacts import read_frame, read_record, write_record
    from tollgate.records import FeatureSpec
    from tollgate.settings import InfraValidateSettings
    from tollgate.steps.infra_validate import run_infra_validate

    os.makedirs(os.path.dirname(report.path), exist_ok=True)
    spec = read_record(FeatureSpec, features.path)
    # Read while the model server starts; only the model's columns, which the server and the graph get.
    outcome = run_infra_validate(best.path, lambda: read_frame(test.path, columns=spec.columns), spec,
                                 InfraValidateSettings.from_json(settings_json), log_dir=os.path.dirname(report.path))
    write_record(outcome, report.path)
    report.metadata.update(outcome.kfp_metadata())
    if not outcome.passed:
        raise RuntimeError(f"infra validation failed, promotion blocked: {outcome.reason}")
