"""A test oracle: what KServe v0.20.0 refuses in an InferenceService that the CRD schema lets through.

The CRD schema (tests/test_manifests.py ``kserve_errors``) checks shapes. KServe's validating
webhook (``failurePolicy: Fail``) and its controller refuse more, and a refusal there is what a
real cluster answers on first contact. This module restates, for the fields Tollgate's objects
touch, the rules read from kserve/kserve at tag v0.20.0; every rule names the upstream file and
function it comes from. It is test code, never imported by the product: the deploy step is
checked against it (tests/test_deploy_kserve.py) together with manifests/examples/.

``admission_errors(new, old=None)`` returns the denials for a create (``old`` None) or an
update (``old`` = the stored object, its ``status`` included), empty when KServe would accept.
``storage_problems(isvc)`` returns what the controller and the storage-initializer would
do wrong with the storage URIs (not a webhook denial, but a broken or wrong rollout).
"""

from __future__ import annotations

import re
from typing import Any

WEBHOOK = "pkg/apis/serving/v1beta1/inference_service_validation.go"
COMPONENT = "pkg/apis/serving/v1beta1/component.go"

# pkg/apis/serving/v1beta1/inference_service_validation.go: IsvcNameFmt / IsvcRegexp
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# pkg/apis/serving/v1beta1/predictor.go: PredictorSpec.Name kubebuilder Pattern (also the CRD's)
PREDICTOR_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# pkg/constants/constants.go: DeploymentMode, AutoscalerClass annotation keys
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
KNATIVE_AUTOSCALING_CLASS = "autoscaling.knative.dev/class"
# pkg/constants/constants.go: AutoscalerAllowedClassList (kpa is *not* in it)
ALLOWED_AUTOSCALER_CLASSES = ("hpa", "external", "keda", "none")
# pkg/constants/constants.go: AutoscalerAllowedKPAMetricsList
KPA_METRICS = ("concurrency", "rps")
# pkg/constants/constants.go: InferenceServiceContainerName
PREDICTOR_CONTAINER = "kserve-container"
# pkg/apis/serving/v1beta1/predictor.go: PredictorSpec.GetImplementations (framework fields + model)
IMPLEMENTATIONS = ("xgboost", "pytorch", "triton", "sklearn", "tensorflow", "onnx", "pmml", "lightgbm", "paddle",
                   "huggingface", "model")
# pkg/apis/serving/v1beta1/inference_service_validation.go: validatePredictor (the frameworks it checks)
NAMED_STANDARD_PREDICTORS = ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml",
                             "lightgbm", "paddle", "model")
# pkg/apis/serving/v1beta1/component.go: validateLogger (LogAll, LogRequest, LogResponse)
LOGGER_MODES = ("all", "request", "response")
# pkg/controller/v1beta1/inferenceservice/utils/utils.go: SupportedStorageURIPrefixList
STORAGE_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://", "webhdfs://", "oci://",
                    "oci+native://", "hf://")
# pkg/constants/constants.go: ParseDeploymentMode folds the legacy names into the current ones.
_LEGACY_MODES = {"RawDeployment": "Standard", "Serverless": "Knative"}


def _mode(value: str | None) -> str:
    """pkg/constants/constants.go ParseDeploymentMode: legacy names fold; empty means the default, Standard."""
    if not value:
        return "Standard"
    return _LEGACY_MODES.get(value, value)


def implementations(predictor: dict[str, Any]) -> list[str]:
    """pkg/apis/serving/v1beta1/predictor.go ``PredictorSpec.GetImplementations``.

    The framework fields and ``model`` that are set, plus a custom predictor when
    ``containers`` is non-empty (the container named kserve-container, else the first one).
    """
    found = [key for key in IMPLEMENTATIONS if predictor.get(key) is not None]
    containers = predictor.get("containers") or []
    if containers:
        named = [c for c in containers if c.get("name") == PREDICTOR_CONTAINER]
        found += ["containers"] * (len(named) or 1)
    return found


def storage_uri(predictor: dict[str, Any]) -> str | None:
    """The storage URI of the predictor's (first) implementation (``GetImplementation().GetStorageUri()``)."""
    found = implementations(predictor)
    if not found or found[0] == "containers":
        return None
    return (predictor.get(found[0]) or {}).get("storageUri")


def _component_extension(spec: dict[str, Any], where: str) -> list[str]:
    """pkg/apis/serving/v1beta1/component.go ``ComponentExtensionSpec.Validate``:
    validateContainerConcurrency, validateReplicas, validateLogger."""
    errors = []
    concurrency = spec.get("containerConcurrency")
    if concurrency is not None and concurrency < 0:
        errors.append(f"{where}: containerConcurrency must be >= 0 ({COMPONENT} validateContainerConcurrency)")
    minimum = spec.get("minReplicas", 1)
    maximum = spec.get("maxReplicas", 0)
    if minimum < 0:
        errors.append(f"{where}: minReplicas must be >= 0 ({COMPONENT} validateReplicas)")
    if maximum < 0:
        errors.append(f"{where}: maxReplicas must be >= 0 ({COMPONENT} validateReplicas)")
    if maximum and minimum > maximum:
        errors.append(f"{where}: minReplicas must not exceed maxReplicas ({COMPONENT} validateReplicas)")
    logger = spec.get("logger")
    if logger is not None and logger.get("mode") not in LOGGER_MODES:
        errors.append(f"{where}: logger.mode must be one of {LOGGER_MODES} ({COMPONENT} validateLogger)")
    return errors


def _autoscaling(annotations: dict[str, str], spec: dict[str, Any], where: str) -> list[str]:
    """inference_service_validation.go ``validateAutoScalingCompExtension``: in Knative mode (any mode that
    is not Standard) without the HPA class, ``validateScalingKPACompExtension`` applies."""
    if _mode(annotations.get(DEPLOYMENT_MODE)) == "Standard":
        return []
    if annotations.get(KNATIVE_AUTOSCALING_CLASS) == "hpa.autoscaling.knative.dev":
        return []  # validateScalingHPACompExtension then; not restated: Tollgate sets no HPA class

    errors = []
    if spec.get("deploymentStrategy") is not None:
        errors.append(f"{where}: customizing deploymentStrategy is only supported for raw deployment mode "
                      f"({WEBHOOK} validateScalingKPACompExtension)")
    metric = spec.get("scaleMetric") or "concurrency"
    if metric not in KPA_METRICS:
        errors.append(f"{where}: [{metric}] is not a supported metric ({WEBHOOK} validateKPAMetrics)")
    return errors


def _canaries(isvc: dict[str, Any]) -> list[str]:
    """inference_service_validation.go ``validateCanarySpecs`` (spec.canary[], Standard mode only)."""
    spec = isvc.get("spec") or {}
    canaries = spec.get("canary") or []
    if not canaries:
        return []
    where = f"({WEBHOOK} validateCanarySpecs)"
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    # The annotation itself, not the folded mode: an absent annotation is refused.
    if annotations.get(DEPLOYMENT_MODE) != "Standard":
        return [f"canary is only supported in Standard deployment mode {where}"]
    stable = spec.get("predictor") or {}
    if storage_uri(stable) is None and stable.get("model") is None:
        return [f"canary requires a stable predictor with a model {where}"]
    names: set[str] = set()
    total = 0
    for index, canary in enumerate(canaries):
        predictor = canary.get("predictor") or {}
        name = predictor.get("name") or ""
        if not name:
            return [f"canary[{index}] predictor.name is required {where}"]
        if name in names:
            return [f"canary predictor.name {name!r} is duplicated {where}"]
        names.add(name)
        if name == (stable.get("name") or ""):
            return [f"canary predictor.name {name!r} conflicts with stable predictor name {where}"]
        percent = canary.get("trafficPercent", 0)
        if not 0 <= percent <= 100:
            return [f"canary {name!r} trafficPercent must be between 0 and 100 {where}"]
        total += percent
        if len(implementations(predictor)) != 1:
            return [f"canary {name!r} predictor: exactly one implementation is required "
                    f"({COMPONENT} validateExactlyOneImplementation) {where}"]
        extension = _component_extension(predictor, f"canary {name!r} predictor")
        if extension:
            return extension
        if predictor.get("workerSpec") is not None:
            return [f"canary {name!r} must not set workerSpec {where}"]
        for fixed in ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling"):
            if predictor.get(fixed):
                return [f"canary {name!r} must not set {fixed} (canary uses fixed replicas) {where}"]
        if predictor.get("minReplicas") is not None and predictor["minReplicas"] > stable.get("minReplicas", 1):
            return [f"canary {name!r} minReplicas must not exceed stable predictor minReplicas {where}"]
    if total > 100:
        return [f"sum of canary trafficPercent values ({total}) must be <= 100 {where}"]
    return []


def admission_errors(new: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """The denials KServe v0.20.0's validating webhook would answer for ``new`` (empty = admitted).

    Follows ``InferenceServiceValidator.ValidateCreate`` / ``ValidateUpdate`` and
    ``validateInferenceService`` in the order they run; like the webhook, the first
    failing check of ``validateInferenceService`` ends it.
    """
    metadata = new.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    spec = new.get("spec") or {}
    predictor = spec.get("predictor") or {}
    name = metadata.get("name") or ""

    if old is not None:
        # ValidateUpdate: validateDeploymentMode, then validatePredictorNameChange.
        recorded = ((old.get("status") or {}).get("deploymentMode")) or ""
        wanted = annotations.get(DEPLOYMENT_MODE)
        if recorded and wanted is not None and wanted != _mode(recorded):
            return [f"update rejected: deploymentMode cannot be changed from {_mode(recorded)!r} to {wanted!r} "
                    f"({WEBHOOK} validateDeploymentMode)"]
        old_predictor = (old.get("spec") or {}).get("predictor") or {}
        if (old_predictor.get("name") or "") != (predictor.get("name") or ""):
            if (storage_uri(old_predictor) or "") == (storage_uri(predictor) or ""):
                return [f"predictor.name change requires a model change (e.g. storageUri) "
                        f"({WEBHOOK} validatePredictorNameChange)"]

    # validateInferenceService, in order.
    if not ISVC_NAME.match(name):
        return [f"the InferenceService {name!r} is invalid: name must match {ISVC_NAME.pattern} "
                f"({WEBHOOK} validateInferenceServiceName)"]
    if AUTOSCALER_CLASS in annotations and annotations[AUTOSCALER_CLASS] not in ALLOWED_AUTOSCALER_CLASSES:
        return [f"[{annotations[AUTOSCALER_CLASS]}] is not a supported autoscaler class type "
                f"({WEBHOOK} validateInferenceServiceAutoscaler)"]
    for key in NAMED_STANDARD_PREDICTORS:
        if (predictor.get(key) or {}).get("name"):
            return [f"the 'name' field is not allowed in standard predictor: spec.predictor.{key}.name "
                    f"({WEBHOOK} validatePredictor, kserve PR #4535)"]
    if storage_uri(predictor) is not None and predictor.get("storageUris"):
        return [f"Setting both StorageURI and StorageURIs is not supported ({WEBHOOK} validateMultipleStorageURIs)"]
    found = implementations(predictor)
    if len(found) != 1:
        return [f"exactly one predictor implementation is required, found {found or 'none'} "
                f"({COMPONENT} validateExactlyOneImplementation)"]
    errors = _component_extension(predictor, "spec.predictor") + _autoscaling(annotations, predictor, "spec.predictor")
    if errors:
        return errors[:1]
    return _canaries(new)


def storage_problems(isvc: dict[str, Any]) -> list[str]:
    """Storage URIs the controller refuses or the storage-initializer would read wrongly.

    - pkg/controller/v1beta1/inferenceservice/utils/utils.go ``ValidateStorageURI``: the scheme
      must be one of SupportedStorageURIPrefixList (else the predictor is not reconciled).
    - python/storage/kserve_storage/kserve_storage.py ``Storage._download_s3``: it lists
      ``bucket.objects.filter(Prefix=bucket_path)``, a plain string prefix, so ``.../v1`` also
      downloads ``.../v10/`` to ``.../v19/``. A version directory must end with ``/``.
    """
    spec = isvc.get("spec") or {}
    predictors = [("spec.predictor", spec.get("predictor") or {})]
    predictors += [(f"spec.canary[{i}].predictor", canary.get("predictor") or {})
                   for i, canary in enumerate(spec.get("canary") or [])]
    problems = []
    for where, predictor in predictors:
        uri = storage_uri(predictor)
        if uri is None:
            continue
        if re.match(r"\w+?://", uri) and not uri.startswith(STORAGE_PREFIXES):
            problems.append(f"{where}: storage URI {uri!r} has an unsupported scheme (utils.go ValidateStorageURI)")
        if uri.startswith("s3://") and not uri.endswith("/"):
            problems.append(f"{where}: storageUri {uri!r} is a prefix without a trailing '/': the storage-initializer "
                            "also downloads sibling versions (kserve_storage.py Storage._download_s3)")
    return problems
