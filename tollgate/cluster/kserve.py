"""Roll a registered version out as a KServe InferenceService, prove it serves, undo it if not.

The rollout writes the InferenceService (create, or merge-patch the existing one), waits
for Ready, and then *proves* the new version serves, because Ready alone does not: in
Standard mode ``Ready`` follows the predictor Deployment's ``Available``, which stays True
through a one-replica rolling update while the old pod keeps answering
(kserve v0.20.0 ``inference_service_status.go`` PropagateRawStatus). Proof is

- the predictor Deployment finished its rollout to a pod template carrying this version
  (``tollgate.io/model-version``, which KServe copies from the InferenceService's labels):
  ``observedGeneration`` current and ``updatedReplicas == replicas == availableReplicas``,
  so no pod of an older ReplicaSet is left (Standard mode), and
- ``consecutive_answers`` answers in a row, over v1 REST and v2 REST, that carry the new
  ``model_version`` (our model server puts it in every answer).

With ``canary_traffic_percent`` in Standard mode the new version first runs as a canary
(``spec.canary[]``, its own Deployment ``{isvc}-{name}-predictor``); it must become
``CanaryPredictorReady``, answer with the new version, and stay clean for
``canary_observe_seconds`` before it is promoted the way KServe documents it: the stable
predictor takes the canary's name and ``storageUri`` and the canary entry goes (kserve
v0.20.0 ``inference_service.go`` CanarySpec). Knative mode keeps ``canaryTrafficPercent``.

Any failure puts the previous spec back (or deletes an InferenceService this rollout created)
and raises :class:`DeployError` with the reason, including the API server's own message.

API use: ``get/create/patch/update/delete`` on ``inferenceservices`` and ``get`` on
``deployments.apps`` — what the Role in manifests/base/kfp/deployer-rbac.yaml grants KFP's
``pipeline-runner``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict

from tollgate.config import KServeDeployConfig, MonitoringConfig
from tollgate.errors import TollgateError
from tollgate.records import ModelInputs

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
MODEL_FORMAT = "tollgate"
# The runtime's container (manifests/base/serving); the only place a model name must be sent is a canary.
CONTAINER_NAME = "kserve-container"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
VERSION_LABEL = "tollgate.io/model-version"
PART_OF_LABEL = "app.kubernetes.io/part-of"
RBAC_FILE = "manifests/base/kfp/deployer-rbac.yaml"
# The controller marks a model that cannot load with these; waiting longer will not help.
TERMINAL_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")
# The API server's wording when RBAC (not an admission webhook) refused a request.
RBAC_DENIAL = re.compile(r'forbidden: User "[^"]*" cannot')
# How many error answers the canary may give while it is watched before it is removed.
CANARY_ERROR_BUDGET = 0


class DeployError(TollgateError):
    """A rollout failed; the message says why and what was restored."""


class KServeSettings(KServeDeployConfig):
    """The ``deploy.kserve`` config section (its fields, defaults and bounds are
    :class:`~tollgate.config.KServeDeployConfig`'s, inherited) plus what the rollout takes from
    ``monitoring``: flags appended to the runtime's args, and the Secret whose keys
    (S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) an s3:// log is written with."""

    model_config = ConfigDict(frozen=True)

    log_args: tuple[str, ...] = ()
    log_secret: str | None = None

    @classmethod
    def from_config(cls, kserve: KServeDeployConfig, monitoring: MonitoringConfig | None = None) -> KServeSettings:
        """The ``deploy.kserve`` section as it is, plus the prediction log's flags and Secret when
        ``monitoring`` sets a ``log_uri``."""
        settings = cls(**kserve.model_dump())
        if monitoring is None or not monitoring.log_uri:
            return settings
        return settings.model_copy(update={
            "log_args": log_flags(monitoring),
            # An empty setting falls back to the default Secret name rather than to no Secret at all.
            "log_secret": (settings.monitoring_secret or KServeDeployConfig.model_fields["monitoring_secret"].default)
            if monitoring.log_uri.startswith("s3://") else None})


def log_flags(monitoring: MonitoringConfig) -> tuple[str, ...]:
    """The serving entry point's ``--log-*`` flags for the ``monitoring`` config."""
    return (f"--log-uri={monitoring.log_uri}", f"--log-sample-rate={monitoring.sample_rate}",
            f"--log-flush-records={monitoring.flush_records}", f"--log-flush-seconds={monitoring.flush_seconds}",
            f"--log-queue-size={monitoring.queue_size}")


# -- what we send ---------------------------------------------------------------------------------

def version_directory(storage_uri: str) -> str:
    """``storage_uri`` ending in ``/``.

    KServe's storage-initializer lists S3 keys by plain prefix (kserve_storage.py
    ``_download_s3``): ``s3://models/m/v1`` would also download ``v10/`` .. ``v19/``.
    """
    return storage_uri.rstrip("/") + "/"


def predictor_service_name(isvc_name: str, predictor_name: str = "") -> str:
    """The predictor Deployment and Service name KServe derives (constants.go ``PredictorServiceName``)."""
    return f"{isvc_name}-{predictor_name}-predictor" if predictor_name else f"{isvc_name}-predictor"


def _model_spec(storage_uri: str, settings: KServeSettings):
    from kserve import V1beta1ModelFormat, V1beta1ModelSpec

    # No `name`: KServe v0.20's webhook denies a non-empty predictor.model.name (validatePredictor);
    # the container merge then keeps the runtime container's name (kserve-container).
    # The prediction log's flags ride as model args: KServe v0.20 appends them to the runtime's
    # (pkg/controller/v1beta1/inferenceservice/utils/utils.go, MergeRuntimeContainers).
    env_from = None
    if settings.log_secret:
        from kubernetes.client import V1EnvFromSource, V1SecretEnvSource

        env_from = [V1EnvFromSource(secret_ref=V1SecretEnvSource(name=settings.log_secret))]
    return V1beta1ModelSpec(model_format=V1beta1ModelFormat(name=MODEL_FORMAT), runtime=settings.runtime,
                            storage_uri=version_directory(storage_uri), args=list(settings.log_args) or None,
                            env_from=env_from)


def _to_json(obj: Any) -> dict[str, Any]:
    """The SDK object as API JSON, without the empty ``model.name`` the SDK always fills in."""
    from kubernetes.client import ApiClient

    body = ApiClient().sanitize_for_serialization(obj)
    predictor = (body.get("spec") or {}).get("predictor") or body
    model = predictor.get("model") or {}
    if model.get("name") == "":
        del model["name"]
    return body


def build_inference_service(name: str, storage_uri: str, version: int, settings: KServeSettings,
                            canary: bool = False, predictor_name: str = "") -> dict[str, Any]:
    """The InferenceService for one registry version, as the JSON the API server takes.

    Built from the kserve SDK models so field names follow the SDK (and the CRD);
    ``serviceAccountName`` sits on the predictor, where the storage-initializer reads it.
    ``canary`` adds Knative's ``canaryTrafficPercent`` (Standard mode uses ``spec.canary``,
    see :func:`standard_canary`); ``predictor_name`` keeps a stable predictor's name.
    """
    from kserve import V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1PredictorSpec
    from kubernetes.client import V1ObjectMeta

    predictor = V1beta1PredictorSpec(
        name=predictor_name or None,
        service_account_name=settings.service_account,
        model=_model_spec(storage_uri, settings),
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
    return _to_json(isvc)


def canary_name(version: int, stable_name: str) -> str:
    """The canary predictor's name: ``v<N>``, unless the stable predictor already has that name."""
    name = f"v{version}"
    return name if name != stable_name else f"{name}-canary"


def standard_canary(storage_uri: str, version: int, settings: KServeSettings, name: str) -> dict[str, Any]:
    """One ``spec.canary[]`` entry (Standard mode) that serves ``storage_uri`` as predictor ``name``.

    The canary predictor repeats the full model spec (webhook ``validateCanarySpecs`` wants
    exactly one implementation in it) and labels its pods with the new version, so its
    Deployment's template proves which version it runs; the InferenceService's own labels
    stay as they are until promotion, or the stable pods would restart for nothing.
    """
    from kserve import V1beta1PredictorSpec

    model = _model_spec(storage_uri, settings)
    # The CRD requires spec.canary[].predictor.model.name (unlike spec.predictor.model.name, which the
    # webhook forbids; validateCanarySpecs does not look at it). The container merge lets a non-empty
    # name override the runtime's (utils.go MergeRuntimeContainers), so send the runtime's own name.
    model.name = CONTAINER_NAME
    predictor = V1beta1PredictorSpec(name=name, service_account_name=settings.service_account,
                                     labels={VERSION_LABEL: str(version)}, model=model)
    return {"predictor": _to_json(predictor), "trafficPercent": int(settings.canary_traffic_percent or 0)}


def stable_storage_uri(isvc: dict[str, Any] | None) -> str | None:
    """The ``storageUri`` the stable predictor of ``isvc`` serves, if any."""
    model = (((isvc or {}).get("spec") or {}).get("predictor") or {}).get("model") or {}
    return model.get("storageUri")


# -- what the cluster reports ---------------------------------------------------------------------

def _conditions(isvc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in ((isvc.get("status") or {}).get("conditions") or [])}


def readiness(isvc: dict[str, Any], generation: int, use_observed_generation: bool = True) -> tuple[str, str]:
    """``("ready"|"failed"|"pending", reason)`` for ``isvc`` at spec ``generation``.

    In Knative mode a Ready condition left over from the previous generation does not count.
    In Standard mode ``observedGeneration`` is the Deployment's, not the InferenceService's
    (PropagateRawStatus), so it proves nothing and ``use_observed_generation`` is False; the
    rollout is proven by :func:`deployment_rollout` and the served answers instead.
    """
    status = isvc.get("status") or {}
    ready = _conditions(isvc).get("Ready") or {}
    model_status = status.get("modelStatus") or {}
    if model_status.get("transitionStatus") in TERMINAL_TRANSITIONS:
        failure = model_status.get("lastFailureInfo") or {}
        detail = failure.get("message") or failure.get("reason") or model_status["transitionStatus"]
        return "failed", f"model status {model_status['transitionStatus']}: {detail}"
    observed = status.get("observedGeneration")
    if use_observed_generation and observed is not None and int(observed) < generation:
        return "pending", f"controller has not observed generation {generation} yet"
    if ready.get("status") == "True":
        return "ready", "Ready"
    not_ready = [f"{c['type']}: {c.get('reason') or ''} {c.get('message') or ''}".strip()
                 for c in _conditions(isvc).values() if c.get("status") != "True"]
    return "pending", "; ".join(not_ready) or "no Ready condition yet"


def canary_readiness(isvc: dict[str, Any], name: str) -> tuple[str, str]:
    """Whether canary ``name`` is up: condition ``CanaryPredictorReady`` and its ``canaryStatuses`` entry."""
    condition = _conditions(isvc).get("CanaryPredictorReady") or {}
    entries = {entry.get("name"): entry for entry in (isvc.get("status") or {}).get("canaryStatuses") or []}
    entry = entries.get(name)
    model_status = (entry or {}).get("modelStatus") or {}
    if model_status.get("transitionStatus") in TERMINAL_TRANSITIONS:
        failure = model_status.get("lastFailureInfo") or {}
        return "failed", f"canary {name} model status {model_status['transitionStatus']}: " \
                         f"{failure.get('message') or failure.get('reason') or ''}".strip()
    if condition.get("status") == "True" and entry and entry.get("ready"):
        return "ready", "CanaryPredictorReady"
    reason = condition.get("reason") or "no CanaryPredictorReady condition yet"
    return "pending", f"canary {name}: {reason}" + ("" if entry else " (not in status.canaryStatuses yet)")


def deployment_rollout(deployment: dict[str, Any], version: int) -> tuple[str, str]:
    """``("ready"|"failed"|"pending", reason)``: has this predictor Deployment fully rolled out ``version``?

    Ready means: its pod template carries ``tollgate.io/model-version: <version>``, the
    Deployment controller observed that spec, and every pod it counts is updated and
    available (``status.replicas`` counts old ReplicaSets' pods too, so equality means none
    is left).
    """
    name = (deployment.get("metadata") or {}).get("name", "?")
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    labels = (((spec.get("template") or {}).get("metadata") or {}).get("labels")) or {}
    if labels.get(VERSION_LABEL) != str(version):
        return "pending", f"Deployment {name} does not run v{version} yet (template has {labels.get(VERSION_LABEL)!r})"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            return "failed", f"Deployment {name}: {condition.get('reason')}: {condition.get('message') or ''}".strip()
    generation = (deployment.get("metadata") or {}).get("generation") or 0
    if int(status.get("observedGeneration") or 0) < int(generation):
        return "pending", f"Deployment {name}: the Deployment controller has not observed generation {generation}"
    wanted = int(spec.get("replicas", 1))
    total, updated, available = (int(status.get(key) or 0) for key in ("replicas", "updatedReplicas",
                                                                          "availableReplicas"))
    if not (updated == total == available == wanted):
        return "pending", (f"Deployment {name}: {updated} of {wanted} pods updated, {available} available, "
                           f"{total - updated} old pod(s) still running")
    return "ready", f"Deployment {name} rolled out"


# -- what the model server answers ----------------------------------------------------------------

def example_row(schema: dict[str, Any]) -> dict[str, Any]:
    """One syntactically valid input row for ``input_schema.json`` (values are neutral, not realistic)."""
    row: dict[str, Any] = {}
    for column in ModelInputs.from_dict(schema).columns if schema.get("columns") else []:
        if column.role == "categorical":
            row[column.name] = (column.categories or [""])[0]
        elif column.dtype == "bool":
            row[column.name] = False
        elif column.dtype == "int64":
            row[column.name] = 0
        else:
            row[column.name] = 0.0
    return row


def _v2_inputs(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The example row as OIP v2 per-column inputs, each with the datatype its column takes."""
    from tollgate.serving.schema import InputSchema

    row = example_row(schema)
    columns = InputSchema.from_dict(schema).columns if schema.get("columns") else []
    return [{"name": c.name, "shape": [1], "datatype": c.datatype, "data": [row[c.name]]} for c in columns]


def _call(method: str, url: str, payload: Any, timeout: float) -> tuple[dict[str, Any], str]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode() or "{}"
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise DeployError(f"{method} {url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeployError(f"{method} {url} failed: {getattr(exc, 'reason', exc)}") from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError:
        raise DeployError(f"{method} {url} returned non-JSON: {text[:200]}") from None


def served_versions(base_url: str, model_name: str, schema: dict[str, Any], timeout: float = 10.0) -> dict[str, str]:
    """One v1 and one v2 REST prediction; returns ``{"v1": model_version, "v2": model_version}``.

    Raises :class:`DeployError` saying which call failed or came back without predictions.
    """
    base = base_url.rstrip("/")
    v1, text = _call("POST", f"{base}/v1/models/{model_name}:predict", {"instances": [example_row(schema)]}, timeout)
    if not v1.get("predictions"):
        raise DeployError(f"v1 prediction from {base} has no 'predictions': {text[:200]}")
    v2, text = _call("POST", f"{base}/v2/models/{model_name}/infer", {"inputs": _v2_inputs(schema)}, timeout)
    if not v2.get("outputs"):
        raise DeployError(f"v2 inference from {base} has no 'outputs': {text[:200]}")
    v2_version = v2.get("model_version") or (v2.get("parameters") or {}).get("model_version") or ""
    return {"v1": str(v1.get("model_version", "")), "v2": str(v2_version)}


def metrics_errors(text: str) -> int:
    """Error responses counted in a Prometheus ``/metrics`` page.

    Sums ``*_total``/``*_count`` samples whose ``code``/``status``/``status_code`` label is a
    5xx HTTP status or a gRPC failure; a server that keeps no such counter gives 0.
    """
    from prometheus_client.parser import text_string_to_metric_families

    errors = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith(("_total", "_count")):
                continue
            code = next((sample.labels[key] for key in ("code", "status_code", "status") if key in sample.labels), None)
            if code is not None and (code.startswith("5") or code in ("INTERNAL", "UNAVAILABLE", "UNKNOWN")):
                errors += int(sample.value)
    return errors


def scrape_metrics(base_url: str, timeout: float = 10.0) -> str:
    """The model server's ``/metrics`` page (Prometheus text)."""
    url = f"{base_url.rstrip('/')}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        raise DeployError(f"GET {url} failed: {getattr(exc, 'reason', exc)}") from None


def cluster_service_url(namespace: str) -> Callable[[str], str]:
    """Base URL of a predictor Service inside the cluster (KServe gives it port 80 -> the runtime's 8080)."""
    return lambda service: f"http://{service}.{namespace}.svc.cluster.local"


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
    proof: str = ""


class KServeDeployer:
    """Create-or-patch, wait, prove, (canary, promote) and on failure restore one InferenceService.

    ``api`` is a ``kubernetes.client.CustomObjectsApi`` (or anything with its
    get/create/patch/replace/delete ``*_namespaced_custom_object`` methods); ``apps_api`` an
    ``AppsV1Api`` (``read_namespaced_deployment``) or None to skip the Deployment check;
    ``base_url(service)`` maps a predictor Service name to the URL its answers are read from.
    """

    def __init__(self, api, settings: KServeSettings, apps_api=None, base_url: Callable[[str], str] | None = None):
        self.api = api
        self.apps_api = apps_api
        self.settings = settings
        self.base_url = base_url or cluster_service_url(settings.namespace)

    @property
    def standard(self) -> bool:
        return self.settings.deployment_mode != "Knative"

    # -- API verbs ------------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any] | None:
        """The current InferenceService, or None when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.settings.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            what = f"InferenceService {self.settings.namespace}/{name}"
            raise DeployError(self._api_error("read", what, exc)) from None

    def get_deployment(self, name: str) -> dict[str, Any] | None:
        """The predictor Deployment ``name`` as JSON, or None when it does not exist (yet)."""
        from kubernetes.client import ApiClient
        from kubernetes.client.exceptions import ApiException

        try:
            deployment = self.apps_api.read_namespaced_deployment(name, self.settings.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise DeployError(self._api_error("read", f"Deployment {self.settings.namespace}/{name}", exc)) from None
        return ApiClient().sanitize_for_serialization(deployment)

    def apply(self, desired: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Create ``desired`` or merge-patch ``current`` towards it; returns the stored object."""
        name = desired["metadata"]["name"]
        if current is None:
            return self._write("create", name, lambda: self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.settings.namespace, PLURAL, desired))
        patch = {"metadata": {"labels": desired["metadata"]["labels"],
                              "annotations": desired["metadata"]["annotations"]},
                 "spec": json.loads(json.dumps(desired["spec"]))}
        # A merge patch keeps what it does not mention; null removes a canary left from before.
        patch["spec"]["predictor"].setdefault("canaryTrafficPercent", None)
        patch["spec"].setdefault("canary", None)
        return self.patch(name, patch)

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch InferenceService ``name`` with ``body``."""
        return self._write("patch", name, lambda: self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.settings.namespace, PLURAL, name, body))

    def _write(self, verb: str, name: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return call()
        except ApiException as exc:
            what = f"InferenceService {self.settings.namespace}/{name}"
            raise DeployError(self._api_error(verb, what, exc)) from None

    def _timeout(self, first: bool) -> float:
        return self.settings.first_ready_timeout_seconds if first else self.settings.ready_timeout_seconds

    def _poll(self, what: str, check: Callable[[], tuple[str, str]], timeout: float,
              unfinished: str = "not done") -> None:
        """Call ``check`` until it says ready; raise on failed or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state, reason = check()
            if state == "ready":
                return
            if state == "failed":
                raise DeployError(f"{what} failed: {reason}")
            if time.monotonic() >= deadline:
                raise DeployError(f"{what} {unfinished} after {timeout:g} s: {reason}")
            time.sleep(self.settings.poll_seconds)

    def _current(self, name: str) -> dict[str, Any]:
        current = self.get(name)
        if current is None:
            raise DeployError(f"InferenceService {self.settings.namespace}/{name} disappeared while waiting")
        return current

    def wait_ready(self, name: str, generation: int, first: bool = False) -> dict[str, Any]:
        """Poll until Ready (for ``generation`` in Knative mode); raise on a terminal failure or timeout."""
        seen: dict[str, Any] = {}

        def check():
            seen["isvc"] = self._current(name)
            return readiness(seen["isvc"], generation, use_observed_generation=not self.standard)

        self._poll(f"InferenceService {self.settings.namespace}/{name}", check, self._timeout(first), "not Ready")
        return seen["isvc"]

    # -- proof ----------------------------------------------------------------------------------

    def prove_serves(self, name: str, service: str, version: int, schema: dict[str, Any], first: bool = False) -> str:
        """Wait until Deployment ``service`` runs only ``version`` and its answers carry it, K times in a row."""
        settings = self.settings
        timeout = self._timeout(first)
        started = time.monotonic()
        if self.apps_api is not None and self.standard:
            def rolled_out():
                deployment = self.get_deployment(service)
                if deployment is None:
                    return "pending", f"Deployment {settings.namespace}/{service} does not exist yet"
                return deployment_rollout(deployment, version)

            self._poll(f"rollout of v{version} to {settings.namespace}/{service}", rolled_out, timeout)
        if not settings.smoke_request:
            return f"Deployment {service} rolled out v{version}" if self.apps_api is not None else "not verified"
        url = self.base_url(service)
        wanted = str(version)
        streak = 0
        last = "no answer yet"

        def answers():
            nonlocal streak, last
            try:
                versions = served_versions(url, name, schema)
            except DeployError as exc:
                streak, last = 0, f"smoke request {exc}"
                return "pending", last
            if set(versions.values()) == {wanted}:
                streak += 1
                last = f"{streak} answer(s) in a row from v{version}"
                return ("ready" if streak >= settings.consecutive_answers else "pending"), last
            streak = 0
            last = f"still serving {versions} (wanted model_version {wanted!r})"
            return "pending", last

        remaining = max(timeout - (time.monotonic() - started), settings.poll_seconds)
        self._poll(f"v{version} answering at {url}", answers, remaining)
        return f"{settings.consecutive_answers} consecutive v1+v2 answers from v{version} at {url}"

    def observe_canary(self, name: str, service: str, version: int, schema: dict[str, Any]) -> str:
        """Watch canary ``service`` for ``canary_observe_seconds``: every answer must carry ``version``, and
        neither our answers nor its ``/metrics`` may show errors."""
        settings = self.settings
        url = self.base_url(service)
        baseline = metrics_errors(scrape_metrics(url))
        deadline = time.monotonic() + settings.canary_observe_seconds
        answers = errors = 0
        while True:
            try:
                versions = served_versions(url, name, schema)
                if set(versions.values()) != {str(version)}:
                    raise DeployError(f"answered {versions}, wanted model_version {str(version)!r}")
                answers += 1
            except DeployError as exc:
                errors += 1
                if errors > CANARY_ERROR_BUDGET:
                    raise DeployError(f"canary {service} failed while observed: {exc}") from None
            try:
                server_errors = metrics_errors(scrape_metrics(url)) - baseline
            except DeployError as exc:
                raise DeployError(f"canary {service} failed while observed: {exc}") from None
            if server_errors > CANARY_ERROR_BUDGET:
                raise DeployError(f"canary {service} counted {server_errors} error response(s) in its /metrics "
                                  f"while observed")
            if time.monotonic() >= deadline:
                return (f"canary {service} answered {answers} time(s) with v{version} in "
                        f"{settings.canary_observe_seconds:g} s, no errors")
            time.sleep(settings.poll_seconds)

    # -- restore --------------------------------------------------------------------------------

    def restore(self, name: str, previous: dict[str, Any] | None) -> str:
        """Put ``previous`` back (or delete what this rollout created); returns what was done."""
        from kubernetes.client.exceptions import ApiException

        namespace = self.settings.namespace
        try:
            if previous is None:
                try:
                    self.api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
                except ApiException as exc:
                    if exc.status == 404:
                        return f"nothing to restore: InferenceService {namespace}/{name} was never created"
                    raise
                return f"deleted the new InferenceService {namespace}/{name}"
            current = self.get(name)
            metadata = {key: previous["metadata"].get(key) for key in ("name", "namespace", "labels", "annotations")}
            if current is not None:
                # A replace is a PUT: keep what the controller owns (its finalizer) and the version we read.
                metadata.update({key: current["metadata"][key] for key in
                                 ("resourceVersion", "finalizers", "ownerReferences") if key in current["metadata"]})
            body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": previous["spec"]}
            if current is None:
                self.api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            else:
                self.api.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)
            return f"restored the previous spec of {namespace}/{name}"
        except ApiException as exc:
            return (f"could NOT restore {namespace}/{name}: "
                    f"{self._api_error('restore', f'InferenceService {namespace}/{name}', exc)}; fix it by hand")
        except DeployError as exc:
            return f"could NOT restore {namespace}/{name}: {exc}; fix it by hand"

    # -- the rollout ----------------------------------------------------------------------------

    def rollout(self, name: str, storage_uri: str, version: int, schema: dict[str, Any]) -> Rollout:
        """Serve ``storage_uri`` under ``name``, prove it; on any failure restore the previous state and raise."""
        settings = self.settings
        if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
            raise DeployError(f"model name {name!r} cannot name an InferenceService: it must start with a letter and "
                              "hold only lowercase letters, digits and '-' (a DNS-1035 label)")
        previous = self.get(name)
        target = version_directory(storage_uri)
        # A canary needs something to compare with, and a model change (webhook validatePredictorNameChange).
        canary = (settings.canary_traffic_percent is not None and previous is not None
                  and stable_storage_uri(previous) != target)
        try:
            if canary and self.standard:
                ready, proof = self._standard_canary(name, storage_uri, version, schema, previous)
            else:
                ready, proof = self._replace(name, storage_uri, version, schema, previous, canary)
        except DeployError as exc:
            restored = self.restore(name, previous)
            raise DeployError(f"{exc} ({restored})") from None
        return Rollout(name, settings.namespace, "created" if previous is None else "patched", service_url(ready),
                       settings.canary_traffic_percent if canary else None, proof)

    def _stable_name(self, isvc: dict[str, Any] | None) -> str:
        return ((((isvc or {}).get("spec") or {}).get("predictor") or {}).get("name")) or ""

    def _replace(self, name, storage_uri, version, schema, previous, knative_canary) -> tuple[dict[str, Any], str]:
        """Create, or patch the stable predictor (a rolling update; Knative: optionally via canaryTrafficPercent)."""
        first = previous is None
        # Keep the stable predictor's name: renaming it would start a new Deployment and delete the old one.
        stable_name = self._stable_name(previous)
        desired = build_inference_service(name, storage_uri, version, self.settings, canary=knative_canary,
                                          predictor_name=stable_name)
        stored = self.apply(desired, previous)
        ready = self.wait_ready(name, int(stored["metadata"].get("generation") or 1), first=first)
        if knative_canary:
            # The new revision took its share of traffic and is Ready: give it all of it, then prove it.
            promoted = self.apply(build_inference_service(name, storage_uri, version, self.settings,
                                                          predictor_name=stable_name), ready)
            ready = self.wait_ready(name, int(promoted["metadata"].get("generation") or 1))
        proof = self.prove_serves(name, predictor_service_name(name, stable_name), version, schema, first=first)
        return self._current(name), proof

    def _standard_canary(self, name, storage_uri, version, schema, previous) -> tuple[dict[str, Any], str]:
        """Standard mode: canary Deployment, proven and observed, then promoted without a restart."""
        settings = self.settings
        cname = canary_name(version, self._stable_name(previous))
        service = predictor_service_name(name, cname)
        self.patch(name, {"spec": {"canary": [standard_canary(storage_uri, version, settings, cname)],
                                   "predictor": {"canaryTrafficPercent": None}}})

        self._poll(f"canary {cname} of {settings.namespace}/{name}",
                   lambda: canary_readiness(self._current(name), cname), settings.ready_timeout_seconds)
        canary_proof = self.prove_serves(name, service, version, schema)
        observed = self.observe_canary(name, service, version, schema)

        # Promote as KServe documents it: the stable predictor takes the canary's name (so the canary's
        # Deployment becomes the stable one, no restart) and storageUri; the canary entry goes.
        promoted = build_inference_service(name, storage_uri, version, settings, predictor_name=cname)
        stored = self.apply(promoted, self._current(name))
        self.wait_ready(name, int(stored["metadata"].get("generation") or 1))
        proof = self.prove_serves(name, service, version, schema)
        return self._current(name), f"{canary_proof}; {observed}; promoted: {proof}"

    def _api_error(self, verb: str, what: str, exc) -> str:
        """One line: what failed, the status, and the API server's own message (a webhook's denial, RBAC's refusal)."""
        message = ""
        body = getattr(exc, "body", None)
        if body:
            try:
                message = json.loads(body).get("message") or ""
            except (ValueError, AttributeError):
                message = str(body)[:500]
        hint = ""
        if exc.status == 403 and RBAC_DENIAL.search(message):
            hint = f" (the pipeline's service account needs the Role in {RBAC_FILE})"
        elif exc.status == 404 and verb == "create":
            hint = " (is KServe installed? `make cluster-up` installs v0.20.0)"
        detail = f": {message}" if message else ""
        return f"cannot {verb} {what}: {exc.status} {exc.reason}{detail}{hint}"
