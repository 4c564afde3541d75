"""Retrain-check component: the first step when ``retrain.when`` is drift or new_data; its bool drives ``dsl.If``."""

from kfp.dsl import Artifact, Output


def retrain_check(settings_json: str, data_source: str, scheduled_time: str, registry_uri: str, model_name: str,
                  decision: Output[Artifact]) -> bool:
    """Decide whether this run trains; writes the decision (with its numbers) as JSON."""
    from tollgate.artifacts import write_record
    from tollgate.registry import open_registry
    from tollgate.settings import RetrainSettings
    from tollgate.steps.retrain import run_retrain_check

    verdict = run_retrain_check(RetrainSettings.from_json(settings_json), open_registry(registry_uri), model_name,
                                data_source, scheduled_time)
    write_record(verdict, decision.path)
    decision.metadata.update(verdict.kfp_metadata())
    print(verdict.message)
    return verdict.train
