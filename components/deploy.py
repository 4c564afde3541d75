"""Deploy component: make the registered version the one that serves."""

from kfp.dsl import Artifact, Output


def deploy(config_json: str, registry_uri: str, model_name: str, version: int, result: Output[Artifact]) -> str:
    """Run the configured deploy target; returns a one-line description."""
    import json
    from dataclasses import asdict

    from tollgate.config import TollgateConfig
    from tollgate.registry import open_registry
    from tollgate.steps.deploy import deploy as run_deploy
    from tollgate.steps.deploy import scored_champion

    config = TollgateConfig.from_json(config_json)
    registry = open_registry(registry_uri)
    # Promote only over the champion the gate compared against (recorded by register).
    # The model server writes the prediction log the config asks for (KServe: as runtime args).
    options = {**config.deploy.model_dump(), "monitoring": config.monitoring.model_dump()}
    outcome = run_deploy(config.deploy.target, registry, model_name, version, options,
                         expect_production=scored_champion(registry, model_name, version))
    with open(result.path, "w") as handle:
        json.dump(asdict(outcome), handle, indent=2, default=str)
    result.metadata.update({"target": outcome.target, "version": version, "promoted": outcome.promoted})
    return outcome.detail
