"""Register component: publish the gated model as a new registry version."""

from kfp.dsl import Artifact, Dataset, Input, Model


def register(best: Input[Model], features: Input[Artifact], evaluation: Input[Artifact],
             decision: Input[Artifact], raw: Input[Dataset], data_schema: Input[Artifact], registry_uri: str,
             model_name: str, run_id: str) -> int:
    """Push model, input and data schemas and metadata to the registry; returns the new version number."""
    from tollgate.artifacts import read_record
    from tollgate.records import DataLineage, DataSchema, Decision, Evaluation, FeatureSpec
    from tollgate.registry import open_registry
    from tollgate.steps.register import run_register

    version = run_register(open_registry(registry_uri), model_name, best.path, read_record(FeatureSpec, features.path),
                           read_record(Evaluation, evaluation.path), read_record(Decision, decision.path),
                           data=DataLineage.from_metadata(raw.metadata),
                           data_schema=read_record(DataSchema, data_schema.path), run_id=run_id)
    return version.version
