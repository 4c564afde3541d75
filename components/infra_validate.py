"""Infra-validate component: the candidate must load and answer in the real model server before promotion."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def infra_validate(config_json: str, best: Input[Model], test: Input[Dataset], features: Input[Artifact],
                   report: Output[Artifact]) -> None:
    """Serve the candidate's model.onnx on loopback, query it over REST v2 and gRPC, require answers identical
    to in-process onnxruntime and within tolerance of the scikit-learn Pipeline's saved test probabilities."""
    import json
    import os

    import pandas as pd

    from tollgate.config import TollgateConfig
    from tollgate.steps.infra_validate import infra_validate as run_infra_validate
    from tollgate.steps.preprocess import FeatureSpec

    serving = TollgateConfig.from_json(config_json).serving
    with open(features.path) as handle:
        spec = FeatureSpec.from_dict(json.load(handle))
    # The server log sits beside the report, so a blocked candidate can be diagnosed afterwards.
    log_dir = os.path.dirname(report.path)
    os.makedirs(log_dir, exist_ok=True)
    outcome = run_infra_validate(best.path, pd.read_parquet(test.path), spec,
                                 sample_rows=serving.infra_validation.sample_rows,
                                 ready_timeout=serving.infra_validation.ready_timeout_seconds,
                                 tolerance=serving.infra_validation.tolerance, max_batch=serving.max_batch,
                                 unknown_columns=serving.unknown_columns, log_dir=log_dir,
                                 sklearn_tolerance=serving.infra_validation.sklearn_tolerance,
                                 max_class_flips=serving.infra_validation.max_class_flips)
    with open(report.path, "w") as handle:
        json.dump(outcome, handle, indent=2, default=str)
    report.metadata.update({"passed": outcome["passed"], "warnings": outcome.get("warnings", []),
                            "sklearn_agreement": outcome.get("sklearn_agreement")})
    if not outcome["passed"]:
        raise RuntimeError(f"infra validation failed, promotion blocked: {outcome['reason']}")
