"""Validate component: check the ingested data against the production version's schema."""

from kfp.dsl import Artifact, Dataset, Input, Output


def validate(config_json: str, raw: Input[Dataset], registry_uri: str, model_name: str,
             report: Output[Artifact]) -> None:
    """Write the validation report; fail the run on a blocking anomaly."""
    import json

    import pandas as pd

    from tollgate.config import TollgateConfig
    from tollgate.errors import DataError
    from tollgate.registry import SCHEMA_FILE, open_registry
    from tollgate.steps.validate import validate as run_validate

    config = TollgateConfig.from_json(config_json)
    frame = pd.read_parquet(raw.path)
    registry = open_registry(registry_uri)
    champion = registry.champion(model_name)
    reference = registry.store.read_json(f"{model_name}/v{champion.version}/{SCHEMA_FILE}") if champion else None
    outcome = run_validate(frame, reference, config.data.target, champion.version if champion else None)
    with open(report.path, "w") as handle:
        json.dump(outcome.to_dict(), handle, indent=2)
    report.metadata.update({"passed": outcome.passed, "anomalies": len(outcome.anomalies)})
    if not outcome.passed:
        blocking = [a.message() for a in outcome.anomalies if a.blocking]
        raise DataError("validation failed; nothing will be trained or registered:\n  " + "\n  ".join(blocking))
