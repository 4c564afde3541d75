"""Preprocess component: split the data and describe the features."""

from kfp.dsl import Artifact, Dataset, Input, Output


def preprocess(settings_json: str, raw: Input[Dataset], train: Output[Dataset], validation: Output[Dataset],
               test: Output[Dataset], features: Output[Artifact]) -> None:
    """Stratified split into datasets plus the feature spec (roles and input schema)."""
    from tollgate.artifacts import read_frame, write_frame, write_record
    from tollgate.settings import PreprocessSettings
    from tollgate.steps.preprocess import run_preprocess

    spec, splits = run_preprocess(read_frame(raw.path), PreprocessSettings.from_json(settings_json))
    for artifact, part in ((train, splits.train), (validation, splits.validation), (test, splits.test)):
        write_frame(part, artifact.path, uri=artifact.uri)
        artifact.metadata["rows"] = len(part)
    write_record(spec, features.path)
    features.metadata.update({"numeric": len(spec.numeric), "categorical": len(spec.categorical), "task": spec.task})
