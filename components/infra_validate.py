"""Infra-validate component: prove the candidate loads and answers before it is promoted."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def infra_validate(best: Input[Model], test: Input[Dataset], features: Input[Artifact],
                   report: Output[Artifact]) -> None:
    """Load the candidate as the server would and compare its answers with in-process ones."""
    import json

    import pandas as pd

    from tollgate.steps.infra_validate import infra_validate as run_infra_validate
    from tollgate.steps.preprocess import FeatureSpec

    with open(features.path) as handle:
        spec = FeatureSpec.from_dict(json.load(handle))
    outcome = run_infra_validate(best.path, pd.read_parquet(test.path), spec)
    with open(report.path, "w") as handle:
        json.dump(outcome, handle, indent=2, default=str)
    report.metadata.update({"passed": outcome["passed"]})
    if not outcome["passed"]:
        raise RuntimeError(f"infra validation failed, promotion blocked: {outcome['reason']}")
