"""Deploy: make a registered version the one that serves.

Target ``local``: move the ``production`` alias; ``tollgate serve`` serves it.
Target ``kserve``: move the alias *and* roll the version out as a KServe
InferenceService (create or patch, wait for Ready, prove the new version serves, or
canary then promote); if the rollout fails, both the InferenceService and the aliases
go back to what they were.

Promotion is conditional: with ``expect_production`` (the champion evaluate scored the
candidate against, None for "no champion"), ``production`` moves only if it still points
there. If another run moved it meanwhile, nothing is promoted and the result says so:
the candidate was never compared with the new champion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollgate.errors import ChampionChangedError, TollgateError
from tollgate.records import DeployResult
from tollgate.registry import Registry
from tollgate.registry.base import UNCONDITIONAL, ExpectedProduction

if TYPE_CHECKING:
    from tollgate.cluster.kserve import KServeSettings
    from tollgate.settings import DeploySettings


def scored_champion(registry: Registry, model_name: str, version: int) -> int | None:
    """The champion a registered version was compared with (``replaced_champion`` in its metadata,
    written by register from evaluate's record); None when there was no champion."""
    recorded = registry.get_version(model_name, version).record.replaced_champion
    return int(recorded) if recorded is not None else None


def _not_promoted(target: str, version: int, registry: Registry, model_name: str,
                  exc: ChampionChangedError) -> DeployResult:
    return DeployResult(target, version, registry.aliases(model_name), str(exc), promoted=False)


def deploy_local(registry: Registry, model_name: str, version: int,
                 expect_production: ExpectedProduction = UNCONDITIONAL) -> DeployResult:
    """Promote ``version`` to production in the registry (if ``production`` is still ``expect_production``)."""
    try:
        aliases = registry.promote(model_name, version, reason="gate passed", expect_production=expect_production)
    except ChampionChangedError as exc:
        return _not_promoted("local", version, registry, model_name, exc)
    return DeployResult("local", version, aliases, f"production -> v{version}")


def deploy_kserve(registry: Registry, model_name: str, version: int, settings: KServeSettings | None = None,
                  api=None, apps_api=None, base_url=None,
                  expect_production: ExpectedProduction = UNCONDITIONAL) -> DeployResult:
    """Promote ``version`` and serve it from an InferenceService named after the model.

    ``settings`` are the rollout's (default: ``deploy.kserve``'s defaults, no prediction log);
    ``api`` a ``CustomObjectsApi`` and ``apps_api``
    an ``AppsV1Api`` (default for both: in-cluster credentials, else the kubeconfig);
    ``base_url(service)`` where a predictor Service answers (default: its cluster DNS name). On failure the previous InferenceService
    spec and the previous aliases are restored and :class:`DeployError` says why.
    """
    from tollgate.cluster.kserve import DeployError, KServeDeployer, KServeSettings
    from tollgate.registry.base import SCHEMA_FILE
    from tollgate.s3 import is_s3_uri

    settings = settings or KServeSettings()
    target = registry.get_version(model_name, version)
    if not is_s3_uri(target.uri):
        raise DeployError(f"the kserve target needs an s3:// registry that KServe's storage-initializer can read, "
                          f"got {registry.uri!r}; use the cluster's MinIO (s3://models, see kfp.registry_uri)")
    schema = registry.read_version_json(model_name, version, SCHEMA_FILE) or {}
    if api is None:
        from tollgate.cluster.kube import apps_v1_api, custom_objects_api

        api, apps_api = custom_objects_api(), apps_v1_api()
    aliases_before = registry.aliases(model_name)
    try:
        aliases = registry.promote(model_name, version, reason="gate passed", expect_production=expect_production)
    except ChampionChangedError as exc:
        return _not_promoted("kserve", version, registry, model_name, exc)
    try:
        rollout = KServeDeployer(api, settings, apps_api, base_url).rollout(model_name, target.uri, version, schema)
    except DeployError as exc:
        if not registry.restore_aliases(model_name, aliases_before, only_if=aliases):
            raise DeployError(f"{exc}; registry aliases not restored: another writer moved them meanwhile") from None
        restored = aliases_before.get("production", {}).get("version")
        raise DeployError(f"{exc}; registry aliases restored (production -> "
                          f"{f'v{restored}' if restored is not None else 'unset'})") from None
    canary = f", canary {rollout.canary_percent}% then promoted" if rollout.canary_percent else ""
    return DeployResult("kserve", version, aliases,
                        f"production -> v{version}; InferenceService {rollout.namespace}/{rollout.name} "
                        f"{rollout.action}, Ready at {rollout.url}{canary}; proven by {rollout.proof}")


def deploy(target: str, registry: Registry, model_name: str, version: int, settings: KServeSettings | None = None,
           expect_production: ExpectedProduction = UNCONDITIONAL) -> DeployResult:
    """Dispatch to the configured deploy target (``settings``: the KServe rollout's)."""
    if target == "local":
        return deploy_local(registry, model_name, version, expect_production)
    if target == "kserve":
        return deploy_kserve(registry, model_name, version, settings, expect_production=expect_production)
    raise TollgateError(f"deploy target {target!r} is not available; use 'local' or 'kserve'")


def run_deploy(settings: DeploySettings, registry: Registry, model_name: str, version: int) -> DeployResult:
    """Deploy as the DAG runs it: promote ``version`` only over the champion the gate compared it with
    (recorded by register), with the model server writing the prediction log the config asks for."""
    return deploy(settings.target, registry, model_name, version, rollout_settings(settings),
                  expect_production=scored_champion(registry, model_name, version))


def rollout_settings(settings: DeploySettings) -> KServeSettings | None:
    """The KServe rollout's settings from deploy's (``deploy.kserve`` and the prediction log the
    model server writes); None for the ``local`` target, which rolls nothing out."""
    if settings.target != "kserve":
        return None
    from tollgate.cluster.kserve import KServeSettings

    return KServeSettings.from_config(settings.kserve, settings.monitoring)
