"""The ``kserve`` deploy target: create / patch / wait / smoke / rollback.

No cluster runs in CI, so the Kubernetes API is the one thing replaced here, by
:class:`FakeCustomObjectsApi` (a test double of ``CustomObjectsApi``). Everything else is
real: the registry lives on an S3-compatible test server (moto, not MinIO), the model
versions are a real trained model, the smoke request goes over HTTP to the real Tollgate
model server on 127.0.0.1, and every InferenceService the step writes is validated against
KServe v0.20.0's CRD schema.
"""

import copy
import inspect
import json
import subprocess
import sys
import time
import urllib.request

import pytest
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from tests.conftest import free_port
from tests.test_manifests import kserve_errors
from tollgate.cluster.kserve import (
    GROUP, PLURAL, VERSION, DeployError, KServeDeployer, KServeSettings, build_inference_service, readiness,
)
from tollgate.config import load_config
from tollgate.errors import ConfigError, TollgateError
from tollgate.registry import open_registry
from tollgate.steps.deploy import deploy, deploy_kserve

MODEL = "credit-default"


# -- the Kubernetes API double ----------------------------------------------------------------

def _merge_patch(target, patch):
    """RFC 7386 JSON merge patch, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class FakeCustomObjectsApi:
    """In-memory stand-in for ``kubernetes.client.CustomObjectsApi`` (InferenceServices only).

    It exists only because no Kubernetes cluster runs in CI. It keeps the API server's
    shapes that the rollout depends on: 404 on a missing object, 409 on a duplicate create
    or a stale ``resourceVersion``, ``metadata.generation`` bumped when the spec changes,
    merge-patch semantics (null deletes a field), and optional 403s (RBAC). The KServe
    controller is played by ``controller(isvc, reads)``, called on every read to set the
    status the way the real controller would at that moment.
    """

    def __init__(self, controller=None, forbidden=()):
        self.objects = {}
        self.calls = []
        self.controller = controller or (lambda isvc, reads: None)
        self.forbidden = set(forbidden)
        self.reads = 0
        self._version = 100

    def _check(self, verb, group, version, plural):
        assert (group, version, plural) == (GROUP, VERSION, PLURAL)
        if verb in self.forbidden:
            raise ApiException(status=403, reason="Forbidden")

    def _stamp(self, obj, spec_changed):
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        if spec_changed:
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 0) + 1

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        self._check("get", group, version, plural)
        self.calls.append(("get", name))
        if (namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        self.reads += 1
        obj = self.objects[(namespace, name)]
        self.controller(obj, self.reads)
        return copy.deepcopy(obj)

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kwargs):
        self._check("create", group, version, plural)
        name = body["metadata"]["name"]
        self.calls.append(("create", name))
        if (namespace, name) in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        obj = copy.deepcopy(body)
        obj["metadata"].pop("resourceVersion", None)
        obj["metadata"]["generation"] = 0
        obj.pop("status", None)
        self._stamp(obj, spec_changed=True)
        self.objects[(namespace, name)] = obj
        return copy.deepcopy(obj)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kwargs):
        self._check("patch", group, version, plural)
        self.calls.append(("patch", name, copy.deepcopy(body)))
        if (namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        current = self.objects[(namespace, name)]
        patched = _merge_patch(current, body)
        self._stamp(patched, spec_changed=patched.get("spec") != current.get("spec"))
        self.objects[(namespace, name)] = patched
        return copy.deepcopy(patched)

    def replace_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kwargs):
        self._check("replace", group, version, plural)
        self.calls.append(("replace", name, copy.deepcopy(body)))
        current = self.objects.get((namespace, name))
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        replaced = copy.deepcopy(body)
        replaced["metadata"]["generation"] = current["metadata"]["generation"]
        replaced["status"] = current.get("status")
        self._stamp(replaced, spec_changed=body.get("spec") != current.get("spec"))
        self.objects[(namespace, name)] = replaced
        return copy.deepcopy(replaced)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        self._check("delete", group, version, plural)
        self.calls.append(("delete", name))
        if self.objects.pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="Not Found")
        return {"status": "Success"}

    def verbs(self):
        return [call[0] for call in self.calls if call[0] != "get"]


def ready_after(reads_needed, url):
    """Controller: a generation becomes Ready ``reads_needed`` reads after it was first seen."""
    first_seen = {}

    def controller(isvc, reads):
        generation = isvc["metadata"]["generation"]
        first_seen.setdefault(generation, reads)
        if reads - first_seen[generation] >= reads_needed:
            isvc["status"] = {"observedGeneration": generation, "url": "http://credit-default.tollgate.example.com",
                              "address": {"url": url},
                              "conditions": [{"type": "Ready", "status": "True"}],
                              "modelStatus": {"transitionStatus": "UpToDate"}}

    return controller


def fails_to_load(message):
    """Controller: the storage-initializer / model server cannot load the new version."""
    def controller(isvc, reads):
        isvc["status"] = {"observedGeneration": isvc["metadata"]["generation"],
                          "conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed"}],
                          "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
                                          "lastFailureInfo": {"reason": "ModelLoadFailed", "message": message}}}
    return controller


def test_double_matches_the_real_client_signatures():
    """If kubernetes' CustomObjectsApi changes the verbs we call, the double must change too."""
    for method in ("get_namespaced_custom_object", "create_namespaced_custom_object",
                   "patch_namespaced_custom_object", "replace_namespaced_custom_object",
                   "delete_namespaced_custom_object"):
        real = [p for p in inspect.signature(getattr(CustomObjectsApi, method)).parameters if p not in ("self", "kwargs")]
        fake = [p for p in inspect.signature(getattr(FakeCustomObjectsApi, method)).parameters if p not in ("self", "kwargs")]
        assert fake == real, method


# -- real parts: a registry on the S3-compatible test server, a real model server -------------

@pytest.fixture(scope="module")
def s3_registry(s3_server, trained_model_dir):
    """A registry on the S3-compatible test server with two real versions (v1, v2) of one model."""
    import uuid

    from tollgate.s3 import client_from_env

    bucket = f"deploy-{uuid.uuid4().hex[:10]}"
    client_from_env().make_bucket(bucket)
    registry = open_registry(f"s3://{bucket}")
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    for _ in range(2):
        registry.register(MODEL, trained_model_dir, {key: metadata[key] for key in ("features", "test_metrics")
                                                     if key in metadata})
    return registry


@pytest.fixture(scope="module")
def model_server_url(trained_model_dir):
    """The real Tollgate model server (REST only) on 127.0.0.1: the smoke request's target."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tollgate.serving", "--model-dir", str(trained_model_dir), "--model-name", MODEL,
         "--http-port", str(port), "--no-grpc", "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"model server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("model server did not become ready within 60 s")
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def aliases_at_v1(s3_registry):
    """Production at v1 (no previous) before each test, whatever the last test left."""
    s3_registry.restore_aliases(MODEL, {"production": {"version": 1, "updated_at": "2026-11-20T00:00:00+00:00",
                                                       "reason": "test setup"}})
    return s3_registry.aliases(MODEL)


def _options(**kserve):
    values = {"ready_timeout_seconds": 20, "poll_seconds": 0.01}
    values.update(kserve)
    return {"target": "kserve", "kserve": values}


def _existing_isvc(api, version, url, **predictor_extra):
    """Put a Ready InferenceService serving ``version`` into the double, as a previous deploy left it."""
    body = build_inference_service(MODEL, f"s3://bucket/{MODEL}/v{version}", version, KServeSettings())
    body["spec"]["predictor"].update(predictor_extra)
    api.create_namespaced_custom_object(GROUP, VERSION, "tollgate", PLURAL, body)
    stored = api.objects[("tollgate", MODEL)]
    stored["status"] = {"observedGeneration": 1, "address": {"url": url},
                        "conditions": [{"type": "Ready", "status": "True"}]}
    api.calls.clear()
    return copy.deepcopy(stored)


# -- schema of what the step builds ----------------------------------------------------------

@pytest.mark.parametrize("mode, canary", [("Standard", None), ("Knative", 10)])
def test_built_inference_service_matches_the_kserve_crd(mode, canary):
    settings = KServeSettings(deployment_mode=mode, canary_traffic_percent=canary)
    isvc = build_inference_service(MODEL, f"s3://models/{MODEL}/v3", 3, settings, canary=canary is not None)

    assert not kserve_errors(isvc)
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"] == {"name": "kserve-container", "modelFormat": {"name": "tollgate"}, "runtime": "tollgate",
                                  "storageUri": f"s3://models/{MODEL}/v3"}
    assert predictor["serviceAccountName"] == "tollgate-models"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
    assert predictor.get("canaryTrafficPercent") == canary


def test_schema_check_rejects_a_broken_inference_service():
    isvc = build_inference_service(MODEL, f"s3://models/{MODEL}/v3", 3, KServeSettings())
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    errors = kserve_errors(isvc)
    assert len(errors) == 2 and any("storageURI" in e for e in errors)


# -- the rollout -----------------------------------------------------------------------------

def test_first_deploy_creates_waits_and_smoke_tests(s3_registry, aliases_at_v1, model_server_url, monkeypatch):
    api = FakeCustomObjectsApi(controller=ready_after(3, model_server_url))
    monkeypatch.setattr("tollgate.cluster.kube.custom_objects_api", lambda: api)

    result = deploy("kserve", s3_registry, MODEL, 2, _options())

    assert api.verbs() == ["create"]
    stored = api.objects[("tollgate", MODEL)]
    assert not kserve_errors(stored)
    assert stored["spec"]["predictor"]["model"]["storageUri"] == s3_registry.get_version(MODEL, 2).uri
    assert stored["spec"]["predictor"]["model"]["storageUri"].endswith(f"/{MODEL}/v2")
    assert api.reads >= 4, "must keep polling until the controller reports Ready"
    assert result.target == "kserve" and "created" in result.detail and model_server_url in result.detail
    assert s3_registry.alias_version(MODEL, "production") == 2
    assert s3_registry.alias_version(MODEL, "previous") == 1


def test_redeploy_patches_and_ignores_the_stale_ready_condition(s3_registry, aliases_at_v1, model_server_url):
    api = FakeCustomObjectsApi()
    _existing_isvc(api, 1, model_server_url, canaryTrafficPercent=20)
    api.controller = ready_after(4, model_server_url)
    api.reads = 0

    result = deploy_kserve(s3_registry, MODEL, 2, _options(), api=api)

    assert api.verbs() == ["patch"]
    patch = api.calls[1][2]
    assert patch["spec"]["predictor"]["canaryTrafficPercent"] is None, "a left-over canary must be removed"
    stored = api.objects[("tollgate", MODEL)]
    assert stored["metadata"]["generation"] == 2 and not kserve_errors(stored)
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["spec"]["predictor"]["model"]["storageUri"].endswith("/v2")
    # Ready for generation 1 was already there; the rollout waited for generation 2.
    assert api.reads >= 5 and stored["status"]["observedGeneration"] == 2
    assert "patched" in result.detail
    assert s3_registry.alias_version(MODEL, "production") == 2


def test_failed_load_restores_the_previous_spec_and_aliases(s3_registry, aliases_at_v1, model_server_url):
    api = FakeCustomObjectsApi()
    previous = _existing_isvc(api, 1, model_server_url)
    api.controller = fails_to_load("model.joblib: unpickling error")

    with pytest.raises(DeployError) as raised:
        deploy_kserve(s3_registry, MODEL, 2, _options(), api=api)

    message = str(raised.value)
    assert "BlockedByFailedLoad" in message and "unpickling error" in message
    assert "restored the previous spec" in message and "production -> v1" in message
    assert api.verbs() == ["patch", "replace"]
    restored = api.calls[-1][2]
    assert restored["spec"] == previous["spec"] and not kserve_errors(restored)
    assert api.objects[("tollgate", MODEL)]["spec"] == previous["spec"]
    assert s3_registry.aliases(MODEL) == aliases_at_v1


def test_failed_smoke_request_deletes_a_new_service_and_restores_aliases(s3_registry, aliases_at_v1):
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the request really fails
    api = FakeCustomObjectsApi(controller=ready_after(1, dead_url))

    with pytest.raises(DeployError) as raised:
        deploy_kserve(s3_registry, MODEL, 2, _options(), api=api)

    assert "smoke request GET" in str(raised.value) and "deleted the new InferenceService" in str(raised.value)
    assert api.verbs() == ["create", "delete"] and not api.objects
    assert s3_registry.aliases(MODEL) == aliases_at_v1


def test_timeout_names_the_condition_that_is_not_ready(s3_registry, aliases_at_v1, model_server_url):
    api = FakeCustomObjectsApi()
    _existing_isvc(api, 1, model_server_url)

    def stuck(isvc, reads):
        isvc["status"] = {"observedGeneration": isvc["metadata"]["generation"],
                          "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                                          "message": "ImagePullBackOff"}]}

    api.controller = stuck
    started = time.monotonic()
    with pytest.raises(DeployError) as raised:
        deploy_kserve(s3_registry, MODEL, 2, _options(ready_timeout_seconds=0.3), api=api)

    assert time.monotonic() - started < 5
    assert "not Ready after 0.3 s" in str(raised.value) and "ImagePullBackOff" in str(raised.value)
    assert api.verbs() == ["patch", "replace"]
    assert s3_registry.alias_version(MODEL, "production") == 1


def test_rbac_refusal_explains_the_missing_role(s3_registry, aliases_at_v1):
    api = FakeCustomObjectsApi(forbidden={"create", "delete"})

    with pytest.raises(DeployError) as raised:
        deploy_kserve(s3_registry, MODEL, 2, _options(), api=api)

    assert "403" in str(raised.value) and "manifests/base/kfp" in str(raised.value)
    assert s3_registry.alias_version(MODEL, "production") == 1


def test_canary_rolls_out_a_share_then_promotes(s3_registry, aliases_at_v1, model_server_url):
    api = FakeCustomObjectsApi()
    _existing_isvc(api, 1, model_server_url)
    api.controller = ready_after(1, model_server_url)

    result = deploy_kserve(s3_registry, MODEL, 2, _options(deployment_mode="Knative", canary_traffic_percent=10),
                           api=api)

    patches = [call[2] for call in api.calls if call[0] == "patch"]
    assert [p["spec"]["predictor"].get("canaryTrafficPercent") for p in patches] == [10, None]
    stored = api.objects[("tollgate", MODEL)]
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert "canary 10%" in result.detail


def test_kserve_target_needs_an_s3_registry(tmp_path, trained_model_dir):
    registry = open_registry(str(tmp_path / "registry"))
    registry.register(MODEL, trained_model_dir, {})
    with pytest.raises(DeployError, match="s3:// registry"):
        deploy_kserve(registry, MODEL, 1, _options(), api=FakeCustomObjectsApi())
    assert registry.aliases(MODEL) == {}


def test_config_feeds_the_rollout_settings():
    options = load_config(None, {"deploy.target": "kserve", "deploy.kserve.deployment_mode": "Knative",
                                 "deploy.kserve.canary_traffic_percent": 25}).deploy.model_dump()
    settings = KServeSettings.from_options(options)
    assert (settings.namespace, settings.runtime, settings.canary_traffic_percent) == ("tollgate", "tollgate", 25)
    with pytest.raises(ConfigError, match="Knative"):
        load_config(None, {"deploy.kserve.canary_traffic_percent": 25})


def test_unknown_target_is_refused(s3_registry):
    with pytest.raises(TollgateError, match="'local' or 'kserve'"):
        deploy("seldon", s3_registry, MODEL, 1)


def test_readiness_reads_terminal_and_pending_states():
    stale = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2,
                                                       "conditions": [{"type": "Ready", "status": "True"}]}}
    assert readiness(stale, 3)[0] == "pending"
    assert readiness({"status": {}}, 1) == ("pending", "no Ready condition yet")
    invalid = {"status": {"modelStatus": {"transitionStatus": "InvalidSpec"}}}
    assert readiness(invalid, 1) == ("failed", "model status InvalidSpec: InvalidSpec")
    assert KServeDeployer(FakeCustomObjectsApi(), KServeSettings()).get("absent") is None
    with pytest.raises(DeployError, match="DNS-1035"):
        KServeDeployer(FakeCustomObjectsApi(), KServeSettings()).rollout("7-eleven", "s3://m/7-eleven/v1", 1, {})
