"""Preprocess component: split the data and describe the features."""

from kfp.dsl import Artifact, Dataset, Input, Output


def preprocess(settings_json: str, raw: Input[Dataset], train: Output[Dataset], validation: Output[Dataset],
               test: Output[Dataset], features: Output[Artifact]) -> None:
    """Stratified split into datasets plus the feature spec (roles and input schema)."""
    from tollgate.artifacts import read_table, write_record, write_table
    from tollgate.settings import PreprocessSettings
    from tollgate.steps.preprocess import run_preprocess

    table = read_table(raw.path)
    spec, plan = run_preprocess(table.to_pandas(), PreprocessSettings.from_json(settings_json))
    for name, artifact in (("train", train), ("validation", validation), ("test", test)):
        write_table(plan.take_table(table, name), artifact.path, uri=artifact.uri)  # from Arrow, no pandas copy
        artifact.metadata.update(plan.kfp_metadata(name))
    write_record(spec, features.path)
    features.metadata.update(spec.kfp_metadata())
