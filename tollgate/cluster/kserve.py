"""Roll a registered version out as a KServe InferenceService, and undo it if it does not serve.

The rollout: build the InferenceService with the kserve SDK models, create it or
merge-patch the existing one, wait until the controller reports Ready *for this
generation*, send a smoke request, and (with a canary) promote it to all traffic.
Any failure puts the previous spec back (or deletes an InferenceService this rollout
created) and raises :class:`DeployError` with the reason.

Only ``CustomObjectsApi`` verbs on ``inferenceservices`` are used: that is all the
Role in manifests/base/kfp-access grants KFP's ``pipeline-runner``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tollgate.errors import TollgateError

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
MODEL_FORMAT = "tollgate"
CONTAINER_NAME = "kserve-container"  # the runtime's container (manifests/base/serving) that the model spec merges into
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
VERSION_LABEL = "tollgate.io/model-version"
PART_OF_LABEL = "app.kubernetes.io/part-of"
# The controller marks a model that cannot load with these; waiting longer will not help.
TERMINAL_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")


class DeployError(TollgateError):
    """A rollout failed; the message says why and what was restored."""


@dataclass(frozen=True)
class KServeSettings:
    """The ``deploy.kserve`` config section as the rollout needs it."""

    namespace: str = "tollgate"
    service_account: str = "tollgate-models"
    runtime: str = "tollgate"
    deployment_mode: str = "Standard"
    ready_timeout_seconds: float = 300
    canary_traffic_percent: int | None = None
    smoke_request: bool = True
    poll_seconds: float = 2.0

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> "KServeSettings":
        """Read the ``kserve`` block of ``deploy`` options (``DeployConfig.model_dump()``)."""
        block = dict((options or {}).get("kserve") or {})
        known = {name for name in cls.__dataclass_fields__}
        settings = cls(**{key: value for key, value in block.items() if key in known})
        if settings.canary_traffic_percent is not None and settings.deployment_mode != "Knative":
            raise DeployError("canaryTrafficPercent works only in Knative mode; set deploy.kserve.deployment_mode: "
                              "Knative or remove deploy.kserve.canary_traffic_percent")
        return settings


def build_inference_service(name: str, storage_uri: str, version: int, settings: KServeSettings,
                            canary: bool = False) -> dict[str, Any]:
    """The InferenceService for one registry version, as the JSON the API server takes.

    Built from the kserve SDK models so field names follow the SDK (and the CRD);
    ``serviceAccountName`` sits on the predictor, where the storage-initializer reads it.
    """
    from kserve import (
        V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1ModelFormat, V1beta1ModelSpec,
        V1beta1PredictorSpec,
    )
    from kubernetes.client import ApiClient, V1ObjectMeta

    predictor = V1beta1PredictorSpec(
        service_account_name=settings.service_account,
        # The SDK would send name "" and leave it to the webhook; say what it defaults to.
        model=V1beta1ModelSpec(name=CONTAINER_NAME, model_format=V1beta1ModelFormat(name=MODEL_FORMAT),
                               runtime=settings.runtime, storage_uri=storage_uri),
        canary_traffic_percent=settings.canary_traffic_percent if canary else None,
    )
    isvc = V1beta1InferenceService(
        api_version=API_VERSION, kind=KIND,
        metadata=V1ObjectMeta(
            name=name, namespace=settings.namespace,
            labels={PART_OF_LABEL: "tollgate", VERSION_LABEL: str(version)},
            annotations={DEPLOYMENT_MODE_ANNOTATION: settings.deployment_mode},
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )
    return ApiClient().sanitize_for_serialization(isvc)


def readiness(isvc: dict[str, Any], generation: int) -> tuple[str, str]:
    """``("ready"|"failed"|"pending", reason)`` for ``isvc`` at spec ``generation``.

    A Ready condition left over from the previous generation does not count: the
    controller must have observed the spec this rollout wrote.
    """
    status = isvc.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    model_status = status.get("modelStatus") or {}
    if model_status.get("transitionStatus") in TERMINAL_TRANSITIONS:
        failure = model_status.get("lastFailureInfo") or {}
        detail = failure.get("message") or failure.get("reason") or model_status["transitionStatus"]
        return "failed", f"model status {model_status['transitionStatus']}: {detail}"
    # KServe 0.20 records observedGeneration; without it only the Ready condition is there to go by.
    observed = status.get("observedGeneration")
    if observed is not None and int(observed) < generation:
        return "pending", f"controller has not observed generation {generation} yet"
    if ready.get("status") == "True":
        return "ready", "Ready"
    not_ready = [f"{c['type']}: {c.get('reason') or ''} {c.get('message') or ''}".strip()
                 for c in conditions.values() if c.get("status") != "True"]
    return "pending", "; ".join(not_ready) or "no Ready condition yet"


def example_row(schema: dict[str, Any]) -> dict[str, Any]:
    """One syntactically valid input row for ``input_schema.json`` (values are neutral, not realistic)."""
    row: dict[str, Any] = {}
    for column in schema.get("columns", []):
        if column.get("role") == "categorical":
            categories = column.get("categories") or [""]
            row[column["name"]] = categories[0]
        elif column.get("dtype") == "bool":
            row[column["name"]] = False
        elif column.get("dtype") == "int64":
            row[column["name"]] = 0
        else:
            row[column["name"]] = 0.0
    return row


def smoke_request(base_url: str, model_name: str, schema: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Ask the model server whether ``model_name`` is ready, then predict one row (v1 protocol).

    Returns the prediction response; raises :class:`DeployError` saying which call failed.
    """
    base = base_url.rstrip("/")
    calls = [("GET", f"{base}/v2/models/{model_name}/ready", None),
             ("POST", f"{base}/v1/models/{model_name}:predict", {"instances": [example_row(schema)]})]
    body: dict[str, Any] = {}
    for method, url, payload in calls:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode() or "{}"
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise DeployError(f"smoke request {method} {url} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeployError(f"smoke request {method} {url} failed: {getattr(exc, 'reason', exc)}") from None
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise DeployError(f"smoke request {method} {url} returned non-JSON: {text[:200]}") from None
    if not body.get("predictions"):
        raise DeployError(f"smoke prediction from {base} has no 'predictions': {json.dumps(body)[:200]}")
    return body


def service_url(isvc: dict[str, Any]) -> str | None:
    """The cluster-internal URL of the predictor (``status.address.url``), else the external one."""
    status = isvc.get("status") or {}
    return (status.get("address") or {}).get("url") or status.get("url")


@dataclass(frozen=True)
class Rollout:
    """What a successful rollout did."""

    name: str
    namespace: str
    action: str  # "created" | "patched"
    url: str | None
    canary_percent: int | None


class KServeDeployer:
    """Create-or-patch, wait, smoke-test and (on failure) restore one InferenceService.

    ``api`` is a ``kubernetes.client.CustomObjectsApi`` (or anything with its
    get/create/patch/replace/delete ``*_namespaced_custom_object`` methods).
    """

    def __init__(self, api, settings: KServeSettings):
        self.api = api
        self.settings = settings

    # -- API verbs ------------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any] | None:
        """The current InferenceService, or None when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.settings.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise DeployError(self._api_error("read", name, exc)) from None

    def apply(self, desired: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Create ``desired`` or merge-patch ``current`` towards it; returns the stored object."""
        from kubernetes.client.exceptions import ApiException

        name = desired["metadata"]["name"]
        try:
            if current is None:
                return self.api.create_namespaced_custom_object(GROUP, VERSION, self.settings.namespace, PLURAL, desired)
            patch = {"metadata": {"labels": desired["metadata"]["labels"],
                                  "annotations": desired["metadata"]["annotations"]},
                     "spec": json.loads(json.dumps(desired["spec"]))}
            # A merge patch keeps fields it does not mention; null removes a canary left from before.
            patch["spec"]["predictor"].setdefault("canaryTrafficPercent", None)
            return self.api.patch_namespaced_custom_object(GROUP, VERSION, self.settings.namespace, PLURAL, name, patch)
        except ApiException as exc:
            raise DeployError(self._api_error("create" if current is None else "patch", name, exc)) from None

    def wait_ready(self, name: str, generation: int) -> dict[str, Any]:
        """Poll until Ready for ``generation``; raise on a terminal failure or after the timeout."""
        deadline = time.monotonic() + self.settings.ready_timeout_seconds
        while True:
            current = self.get(name)
            if current is None:
                raise DeployError(f"InferenceService {self.settings.namespace}/{name} disappeared while waiting")
            state, reason = readiness(current, generation)
            if state == "ready":
                return current
            if state == "failed":
                raise DeployError(f"InferenceService {self.settings.namespace}/{name} failed: {reason}")
            if time.monotonic() >= deadline:
                raise DeployError(f"InferenceService {self.settings.namespace}/{name} not Ready after "
                                  f"{self.settings.ready_timeout_seconds:g} s: {reason}")
            time.sleep(self.settings.poll_seconds)

    def restore(self, name: str, previous: dict[str, Any] | None) -> str:
        """Put ``previous`` back (or delete what this rollout created); returns what was done."""
        from kubernetes.client.exceptions import ApiException

        namespace = self.settings.namespace
        try:
            if previous is None:
                self.api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
                return f"deleted the new InferenceService {namespace}/{name}"
            current = self.get(name)
            metadata = {key: previous["metadata"].get(key) for key in ("name", "namespace", "labels", "annotations")}
            if current is not None:
                metadata["resourceVersion"] = current["metadata"].get("resourceVersion")
            body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": previous["spec"]}
            if current is None:
                self.api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            else:
                self.api.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)
            return f"restored the previous spec of {namespace}/{name}"
        except (ApiException, DeployError) as exc:
            return f"could NOT restore {namespace}/{name}: {getattr(exc, 'reason', exc)}; fix it by hand"

    # -- the rollout ----------------------------------------------------------------------------

    def rollout(self, name: str, storage_uri: str, version: int, schema: dict[str, Any]) -> Rollout:
        """Serve ``storage_uri`` under ``name``; on any failure restore the previous state and raise."""
        settings = self.settings
        if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
            raise DeployError(f"model name {name!r} cannot name an InferenceService: it must start with a letter and "
                              "hold only lowercase letters, digits and '-' (a DNS-1035 label)")
        canary = settings.canary_traffic_percent is not None
        previous = self.get(name)
        desired = build_inference_service(name, storage_uri, version, settings, canary=canary and previous is not None)
        try:
            stored = self.apply(desired, previous)
            ready = self.wait_ready(name, int(stored["metadata"].get("generation") or 1))
            url = service_url(ready)
            if settings.smoke_request:
                if not url:
                    raise DeployError(f"InferenceService {settings.namespace}/{name} is Ready but has no URL to smoke-test")
                smoke_request(url, name, schema)
            if canary and previous is not None:
                # The new revision answered on its share of traffic: give it all of it.
                promoted = self.apply(build_inference_service(name, storage_uri, version, settings), ready)
                ready = self.wait_ready(name, int(promoted["metadata"].get("generation") or 1))
        except DeployError as exc:
            restored = self.restore(name, previous)
            raise DeployError(f"{exc} ({restored})") from None
        return Rollout(name, settings.namespace, "created" if previous is None else "patched",
                       service_url(ready), settings.canary_traffic_percent if canary and previous else None)

    def _api_error(self, verb: str, name: str, exc) -> str:
        hint = ""
        if exc.status == 403:
            hint = " (the pipeline's service account needs the Role in manifests/base/kfp-access)"
        elif exc.status == 404 and verb == "create":
            hint = " (is KServe installed? `make cluster-up` installs v0.20.0)"
        return (f"cannot {verb} InferenceService {self.settings.namespace}/{name}: "
                f"{exc.status} {exc.reason}{hint}")
