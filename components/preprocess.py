"""Preprocess component: split the data and describe the features."""

from kfp.dsl import Artifact, Dataset, Input, Output


def preprocess(config_json: str, raw: Input[Dataset], train: Output[Dataset], validation: Output[Dataset],
               test: Output[Dataset], features: Output[Artifact]) -> None:
    """Stratified split into Parquet datasets plus the feature spec (roles and input schema)."""
    import json

    import pandas as pd

    from tollgate.config import TollgateConfig
    from tollgate.steps.preprocess import build_feature_spec, split_dataset
    from tollgate.steps.validate import identifier_columns

    config = TollgateConfig.from_json(config_json)
    frame = pd.read_parquet(raw.path)
    data = config.data
    ignored = [data.target, *data.drop] + ([data.date_column] if data.date_column else [])
    # Validate reported these as identifier_column anomalies; the same function finds the same ones.
    drop = list(data.drop) + (list(identifier_columns(frame, ignored)) if data.drop_identifiers else [])
    spec = build_feature_spec(frame, config.data.target, config.data.positive_label, drop,
                              config.data.date_column, config.features.numeric, config.features.categorical,
                              config.features.max_categories, task=config.data.task)
    splits = split_dataset(frame, spec, config.split.test_size, config.split.validation_size, config.split.seed,
                           extra_columns=[a.column for a in config.fairness.sensitive_attributes],
                           test_only_columns=list(frame.columns))
    for artifact, part in ((train, splits.train), (validation, splits.validation), (test, splits.test)):
        part.to_parquet(artifact.path, index=False)
        artifact.metadata["rows"] = len(part)
    with open(features.path, "w") as handle:
        json.dump(spec.to_dict(), handle, indent=2, default=str)
    features.metadata.update({"numeric": len(spec.numeric), "categorical": len(spec.categorical)})
    if spec.multiclass:
        features.metadata.update({"task": spec.task, "classes": [str(c) for c in spec.classes]})
