"""Validate component: check the ingested data against the production version's data schema."""

from kfp.dsl import Artifact, Dataset, Input, Output


def validate(config_json: str, raw: Input[Dataset], registry_uri: str, model_name: str,
             report: Output[Artifact], data_schema: Output[Artifact]) -> None:
    """Write the validation report and this data's schema; fail the run on a blocking anomaly."""
    import json

    import pandas as pd

    from tollgate.config import TollgateConfig
    from tollgate.errors import DataError
    from tollgate.registry import open_registry
    from tollgate.steps.validate import DATA_SCHEMA_FILE, infer_data_schema
    from tollgate.steps.validate import validate as run_validate

    config = TollgateConfig.from_json(config_json)
    data = config.data
    frame = pd.read_parquet(raw.path)
    registry = open_registry(registry_uri)
    champion = registry.champion(model_name)
    reference, note = None, "no production version yet: only checks of the data on its own apply"
    if champion is not None:
        reference = registry.read_version_json(model_name, champion.version, DATA_SCHEMA_FILE)
        note = (f"compared with the data production v{champion.version} was trained on" if reference else
                f"production v{champion.version} has no {DATA_SCHEMA_FILE}: only checks of the data on its own apply")
    ignored = list(data.drop) + ([data.date_column] if data.date_column else [])
    outcome = run_validate(frame, reference, target=data.target, positive_label=data.positive_label,
                           min_rows=data.min_rows, settings=config.validation,
                           reference_version=champion.version if champion else None, note=note,
                           ignored=ignored, drop_identifiers=data.drop_identifiers, task=data.task)
    schema = infer_data_schema(frame, data.target, data.positive_label, ignored, config.validation.drift.bins)
    with open(data_schema.path, "w") as handle:
        json.dump(schema, handle, indent=2, default=str)
    with open(report.path, "w") as handle:
        json.dump(outcome.to_dict(), handle, indent=2)
    report.metadata.update({"passed": outcome.passed, "anomalies": len(outcome.anomalies),
                            "warnings": len(outcome.warnings),
                            "drifted": [d.column for d in outcome.drift if d.drifted]})
    if not outcome.passed:
        raise DataError(outcome.failure_message())
