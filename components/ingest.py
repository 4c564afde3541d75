"""Ingest component: read the table (builtin, file or S3) and write it as a dataset."""

from kfp.dsl import Dataset, Output


def ingest(settings_json: str, data_source: str, scheduled_time: str, raw: Output[Dataset]) -> int:
    """Load and sanity-check the training data; returns the row count."""
    from tollgate.artifacts import write_frame
    from tollgate.settings import IngestSettings
    from tollgate.steps.ingest import run_ingest

    result = run_ingest(IngestSettings.from_json(settings_json), data_source, scheduled_time)
    write_frame(result.frame, raw.path, uri=raw.uri)
    raw.metadata.update(result.kfp_metadata())
    return len(result.frame)
