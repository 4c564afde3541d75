"""The admission oracle (tests/kserve_admission.py) refuses what KServe v0.20.0 refuses, and only that.

Each case is one rule of ``pkg/apis/serving/v1beta1/inference_service_validation.go`` (or the
file the oracle cites) applied to an InferenceService the deploy step builds, then broken in
exactly the way the rule forbids. A rule the oracle dropped would make its case fail.
"""

import copy

import pytest

from tests.kserve_admission import admission_errors, implementations, storage_problems
from tollgate.cluster.kserve import KServeSettings, build_inference_service, standard_canary

MODEL = "credit-default"


def stable(version=1, **settings):
    return build_inference_service(MODEL, f"s3://models/{MODEL}/v{version}", version, KServeSettings(**settings))


def with_canary(isvc, version=2, name="v2", percent=20):
    isvc = copy.deepcopy(isvc)
    entry = standard_canary(f"s3://models/{MODEL}/v{version}", version, KServeSettings(canary_traffic_percent=percent),
                            name)
    isvc["spec"]["canary"] = [entry]
    return isvc


def stored(isvc, mode="Standard"):
    """``isvc`` as the API server holds it after the controller's first status update."""
    isvc = copy.deepcopy(isvc)
    isvc["status"] = {"deploymentMode": mode}
    return isvc


def test_what_the_deploy_step_sends_is_admitted():
    assert admission_errors(stable()) == []
    assert admission_errors(stable(deployment_mode="Knative")) == []
    assert admission_errors(with_canary(stable()), stored(stable())) == []
    assert storage_problems(with_canary(stable())) == []


def mutate(path_value_pairs, base=None):
    isvc = copy.deepcopy(base or stable())
    for path, value in path_value_pairs:
        target = isvc
        *parents, last = path if isinstance(path, tuple) else path.split(".")
        for key in parents:
            target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
        target[last] = value
    return isvc


@pytest.mark.parametrize("change, denial", [
    # validateInferenceServiceName
    ([("metadata.name", "Credit_Default")], "validateInferenceServiceName"),
    # validateInferenceServiceAutoscaler: kpa is not in AutoscalerAllowedClassList
    ([(("metadata", "annotations", "serving.kserve.io/autoscalerClass"), "kpa")], "validateInferenceServiceAutoscaler"),
    # validatePredictor (kserve PR #4535)
    ([("spec.predictor.model.name", "kserve-container")], "the 'name' field is not allowed in standard predictor"),
    # validateMultipleStorageURIs
    ([("spec.predictor.storageUris", [{"uri": "s3://models/x/", "mountPath": "/mnt/models"}])],
     "Setting both StorageURI and StorageURIs"),
    # validateExactlyOneImplementation
    ([("spec.predictor.sklearn", {"storageUri": "s3://models/x/"})], "exactly one predictor implementation"),
    # ComponentExtensionSpec.Validate: validateReplicas, validateContainerConcurrency, validateLogger
    ([("spec.predictor.minReplicas", 3), ("spec.predictor.maxReplicas", 2)], "minReplicas must not exceed"),
    ([("spec.predictor.containerConcurrency", -1)], "containerConcurrency"),
    ([("spec.predictor.logger", {"mode": "everything"})], "logger.mode"),
])
def test_each_create_rule_denies(change, denial):
    errors = admission_errors(mutate(change))
    assert errors and denial in errors[0], errors


def test_knative_mode_refuses_a_deployment_strategy():
    """validateScalingKPACompExtension: deploymentStrategy is for raw (Standard) deployments only."""
    strategy = {"type": "RollingUpdate"}
    assert admission_errors(mutate([("spec.predictor.deploymentStrategy", strategy)])) == []
    knative = stable(deployment_mode="Knative")
    assert "deploymentStrategy" in admission_errors(mutate([("spec.predictor.deploymentStrategy", strategy)],
                                                           knative))[0]


@pytest.mark.parametrize("change, denial", [
    (lambda c: c["metadata"]["annotations"].pop("serving.kserve.io/deploymentMode"), "only supported in Standard"),
    (lambda c: c["spec"]["canary"][0]["predictor"].update(name=""), "predictor.name is required"),
    (lambda c: c["spec"]["canary"].append(copy.deepcopy(c["spec"]["canary"][0])), "is duplicated"),
    (lambda c: c["spec"]["predictor"].update(name="v2"), "conflicts with stable predictor name"),
    (lambda c: c["spec"]["canary"][0].update(trafficPercent=101), "between 0 and 100"),
    (lambda c: c["spec"]["canary"][0]["predictor"].pop("model"), "exactly one implementation"),
    (lambda c: c["spec"]["canary"][0]["predictor"].update(maxReplicas=3), "fixed replicas"),
    (lambda c: c["spec"]["canary"][0]["predictor"].update(minReplicas=2), "must not exceed stable"),
    (lambda c: c["spec"]["canary"].append(dict(copy.deepcopy(c["spec"]["canary"][0]), trafficPercent=90,
                                               predictor=dict(c["spec"]["canary"][0]["predictor"], name="v3"))),
     "sum of canary trafficPercent"),
])
def test_each_canary_rule_denies(change, denial):
    """validateCanarySpecs, rule by rule."""
    isvc = with_canary(stable())
    change(isvc)
    errors = admission_errors(isvc)
    assert errors and denial in errors[0], errors


def test_a_canary_model_may_carry_a_name():
    """validatePredictor looks at spec.predictor only; the CRD even requires canary[].predictor.model.name."""
    isvc = with_canary(stable())
    assert isvc["spec"]["canary"][0]["predictor"]["model"]["name"] == "kserve-container"
    assert admission_errors(isvc) == []


def test_update_rules():
    old = stored(stable(1))
    # validateDeploymentMode: the annotation may not move away from the recorded mode.
    assert "deploymentMode cannot be changed" in admission_errors(stable(2, deployment_mode="Knative"), old)[0]
    assert admission_errors(stable(2, deployment_mode="Knative"), stable(1)) == [], "no recorded mode yet: allowed"
    # Legacy names fold: RawDeployment is Standard.
    assert admission_errors(stable(2), stored(stable(1), mode="RawDeployment")) == []
    # validatePredictorNameChange: a rename needs a model change.
    renamed = mutate([("spec.predictor.name", "v1")], stable(1))
    assert "predictor.name change requires a model change" in admission_errors(renamed, old)[0]
    promoted = mutate([("spec.predictor.name", "v2")], stable(2))
    assert admission_errors(promoted, stored(with_canary(stable(1)))) == []


def test_storage_problems():
    isvc = stable()
    isvc["spec"]["predictor"]["model"]["storageUri"] = f"s3://models/{MODEL}/v1"
    assert "trailing '/'" in storage_problems(isvc)[0]
    isvc["spec"]["predictor"]["model"]["storageUri"] = "ftp://models/x/"
    assert "unsupported scheme" in storage_problems(isvc)[0]
    canary = with_canary(stable())
    canary["spec"]["canary"][0]["predictor"]["model"]["storageUri"] = f"s3://models/{MODEL}/v2"
    assert storage_problems(canary)[0].startswith("spec.canary[0].predictor")


def test_implementations_follow_get_implementations():
    assert implementations({"model": {}}) == ["model"]
    assert implementations({"containers": [{"name": "a"}, {"name": "b"}]}) == ["containers"]
    assert implementations({"model": {}, "containers": [{"name": "kserve-container"}]}) == ["model", "containers"]
    assert implementations({}) == []
