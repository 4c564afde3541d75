"""Ingest component: read the table (builtin, file or S3) and write it as Parquet."""

from kfp.dsl import Dataset, Output


def ingest(config_json: str, data_source: str, scheduled_time: str, raw: Output[Dataset]) -> int:
    """Load and sanity-check the training data; returns the row count."""
    from tollgate.config import TollgateConfig
    from tollgate.steps.ingest import configured_columns
    from tollgate.steps.ingest import ingest as run_ingest

    config = TollgateConfig.from_json(config_json)
    data = config.data
    result = run_ingest(data_source or data.source, data.target,
                        drop=data.drop, builtin=data.builtin.model_dump(), date_column=data.date_column,
                        scheduled_time=scheduled_time or None, window_days=data.window_days, csv=data.csv,
                        numeric=config.features.numeric, configured=configured_columns(config))
    result.frame.to_parquet(raw.path, index=False)
    raw.metadata.update({"rows": len(result.frame), "columns": result.frame.shape[1],
                         "fingerprint": result.fingerprint, "source": result.source,
                         "window": list(result.window) if result.window else None, "notes": result.notes})
    return len(result.frame)
