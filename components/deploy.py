"""Deploy component: make the registered version the one that serves."""

from kfp.dsl import Artifact, Output


def deploy(settings_json: str, registry_uri: str, model_name: str, version: int, result: Output[Artifact]) -> str:
    """Run the configured deploy target (promoting only over the champion the gate compared against);
    returns a one-line description."""
    from tollgate.artifacts import write_record
    from tollgate.registry import open_registry
    from tollgate.settings import DeploySettings
    from tollgate.steps.deploy import run_deploy

    outcome = run_deploy(DeploySettings.from_json(settings_json), open_registry(registry_uri), model_name, version)
    write_record(outcome, result.path)
    result.metadata.update(outcome.kfp_metadata())
    return outcome.detail
