"""Validate component: check the ingested data against the production version's data schema."""

from kfp.dsl import Artifact, Dataset, Input, Output


def validate(settings_json: str, raw: Input[Dataset], registry_uri: str, model_name: str,
             report: Output[Artifact], data_schema: Output[Artifact]) -> None:
    """Write the validation report and this data's schema; fail the run on a blocking anomaly."""
    from tollgate.artifacts import read_frame, write_record
    from tollgate.errors import DataError
    from tollgate.registry import open_registry
    from tollgate.settings import ValidateSettings
    from tollgate.steps.validate import run_validate

    outcome, schema = run_validate(read_frame(raw.path), ValidateSettings.from_json(settings_json),
                                   open_registry(registry_uri), model_name)
    write_record(schema, data_schema.path)
    write_record(outcome, report.path)
    report.metadata.update(outcome.kfp_metadata())
    if not outcome.passed:
        raise DataError(outcome.failure_message())
