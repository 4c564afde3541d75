"""The ``kserve`` deploy target: create / patch / prove / canary / rollback.

No cluster runs in CI, so the Kubernetes API is the one thing replaced here, by a test double
of ``CustomObjectsApi`` and ``AppsV1Api`` driven by :class:`FakeCluster`, a small simulation of
what KServe v0.20.0 and the Deployment controller do in Standard mode (read from their source,
cited below). Everything else is real: the registry lives on an S3-compatible test server (moto,
not MinIO), the model versions are a real trained model, the answers come over HTTP from real
Tollgate model servers on 127.0.0.1 (one per version) through a real loopback proxy that
load-balances a Service's requests over its available pods, and every InferenceService the
step writes passes KServe v0.20.0's CRD schema *and* the admission oracle
(tests/kserve_admission.py) before the double stores it, as the real API server would insist.
"""

import copy
import http.server
import inspect
import itertools
import json
import shutil
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes.client import AppsV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from tests.conftest import free_port
from tests.kserve_admission import admission_errors, storage_problems
from tests.test_manifests import kserve_errors
from tollgate.cluster.kserve import (
    GROUP,
    PLURAL,
    VERSION,
    VERSION_LABEL,
    DeployError,
    KServeDeployer,
    KServeSettings,
    build_inference_service,
    canary_name,
    deployment_rollout,
    metrics_errors,
    predictor_service_name,
    readiness,
    served_versions,
    standard_canary,
)
from tollgate.config import MonitoringConfig, load_config
from tollgate.errors import TollgateError
from tollgate.registry import open_registry
from tollgate.steps.deploy import deploy, deploy_kserve

MODEL = "credit-default"
NAMESPACE = "tollgate"
REPO = Path(__file__).resolve().parents[1]
WEBHOOK_NAME = "inferenceservice.kserve-webhook-server.validator"


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


def _status_body(code, reason, message):
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": reason, "code": code})


def _api_exception(code, reason, message):
    exc = ApiException(status=code, reason=reason)
    exc.body = _status_body(code, reason, message)
    return exc


class FakeCustomObjectsApi:
    """In-memory stand-in for ``kubernetes.client.CustomObjectsApi`` (InferenceServices only).

    It exists only because no Kubernetes cluster runs in CI. It keeps the API server's shapes
    the rollout depends on: 404 on a missing object, 409 on a duplicate create or a stale
    ``resourceVersion``, ``metadata.generation`` bumped when the spec changes, merge-patch
    semantics (null deletes a field), RBAC refusals with the API server's wording, and
    admission: every create, patch and replace first goes through KServe's validating webhook
    (the admission oracle; a denial is a 403 whose body carries the webhook's message) and the
    CRD schema (a 422). ``controller(isvc, reads)`` plays the KServe controller on every read.
    """

    def __init__(self, controller=None, forbidden=(), deny=None):
        self.objects = {}
        self.calls = []
        self.controller = controller or (lambda isvc, reads: None)
        self.forbidden = set(forbidden)
        self.deny = dict(deny or {})  # verb -> webhook message, to play a denial the oracle does not know
        self.reads = 0
        self.admitted = []  # (verb, object) for every write that passed admission
        self._version = 100

    def _check(self, verb, group, version, plural, name="x"):
        assert (group, version, plural) == (GROUP, VERSION, PLURAL)
        if verb in self.forbidden:
            raise _api_exception(403, "Forbidden", f'inferenceservices.serving.kserve.io "{name}" is forbidden: User '
                                 f'"system:serviceaccount:kubeflow:pipeline-runner" cannot {verb} resource '
                                 f'"inferenceservices" in API group "serving.kserve.io" in the namespace "{NAMESPACE}"')

    def _admit(self, verb, new, old):
        denial = self.deny.get(verb)
        errors = [denial] if denial else admission_errors(new, old)
        if errors:
            message = f'admission webhook "{WEBHOOK_NAME}" denied the request: {errors[0]}'
            raise _api_exception(403, "Forbidden", message)
        # Status is a subresource: writes to the main resource never set it.
        schema = kserve_errors({key: value for key, value in new.items() if key != "status"})
        if schema:
            raise _api_exception(422, "Unprocessable Entity", f'InferenceService.serving.kserve.io "{MODEL}" is '
                                 f"invalid: {schema[0]}")
        assert not storage_problems(new), storage_problems(new)
        self.admitted.append((verb, copy.deepcopy(new)))

    def _stamp(self, obj, spec_changed):
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        if spec_changed:
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 0) + 1

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        self._check("get", group, version, plural, name)
        self.calls.append(("get", name))
        if (namespace, name) not in self.objects:
            raise _api_exception(404, "Not Found", f'inferenceservices.serving.kserve.io "{name}" not found')
        self.reads += 1
        obj = self.objects[(namespace, name)]
        self.controller(obj, self.reads)
        return copy.deepcopy(obj)

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kwargs):
        name = body["metadata"]["name"]
        self._check("create", group, version, plural, name)
        self.calls.append(("create", name, copy.deepcopy(body)))
        if (namespace, name) in self.objects:
            raise _api_exception(409, "AlreadyExists", f'inferenceservices.serving.kserve.io "{name}" already exists')
        self._admit("create", body, None)
        obj = copy.deepcopy(body)
        obj["metadata"].pop("resourceVersion", None)
        obj["metadata"]["generation"] = 0
        obj.pop("status", None)
        self._stamp(obj, spec_changed=True)
        self.objects[(namespace, name)] = obj
        return copy.deepcopy(obj)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kwargs):
        self._check("patch", group, version, plural, name)
        self.calls.append(("patch", name, copy.deepcopy(body)))
        if (namespace, name) not in self.objects:
            raise _api_exception(404, "Not Found", f'inferenceservices.serving.kserve.io "{name}" not found')
        current = self.objects[(namespace, name)]
        patched = _merge_patch(current, body)
        self._admit("patch", patched, current)
        self._stamp(patched, spec_changed=patched.get("spec") != current.get("spec"))
        self.objects[(namespace, name)] = patched
        return copy.deepcopy(patched)

    def replace_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kwargs):
        self._check("replace", group, version, plural, name)
        self.calls.append(("replace", name, copy.deepcopy(body)))
        current = self.objects.get((namespace, name))
        if current is None:
            raise _api_exception(404, "Not Found", f'inferenceservices.serving.kserve.io "{name}" not found')
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise _api_exception(409, "Conflict", "the object has been modified")
        replaced = copy.deepcopy(body)
        replaced["metadata"]["generation"] = current["metadata"]["generation"]
        replaced["status"] = current.get("status")
        self._admit("replace", replaced, current)
        self._stamp(replaced, spec_changed=body.get("spec") != current.get("spec"))
        self.objects[(namespace, name)] = replaced
        return copy.deepcopy(replaced)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        self._check("delete", group, version, plural, name)
        self.calls.append(("delete", name))
        if self.objects.pop((namespace, name), None) is None:
            raise _api_exception(404, "Not Found", f'inferenceservices.serving.kserve.io "{name}" not found')
        return {"status": "Success"}

    def verbs(self):
        return [call[0] for call in self.calls if call[0] != "get"]


class FakeAppsV1Api:
    """``AppsV1Api.read_namespaced_deployment`` over :class:`FakeCluster`'s Deployments (a read is a tick)."""

    def __init__(self, cluster):
        self.cluster = cluster

    def read_namespaced_deployment(self, name, namespace, **kwargs):
        self.cluster.tick()
        deployment = self.cluster.deployments.get(name)
        if deployment is None:
            raise _api_exception(404, "Not Found", f'deployments.apps "{name}" not found')
        return deployment.as_json()


def test_double_matches_the_real_client_signatures():
    """If kubernetes' client changes the verbs we call, the double must change too."""
    pairs = [(CustomObjectsApi, FakeCustomObjectsApi, m) for m in (
        "get_namespaced_custom_object", "create_namespaced_custom_object", "patch_namespaced_custom_object",
        "replace_namespaced_custom_object", "delete_namespaced_custom_object")]
    pairs.append((AppsV1Api, FakeAppsV1Api, "read_namespaced_deployment"))
    for real_class, fake_class, method in pairs:
        real = [p for p in inspect.signature(getattr(real_class, method)).parameters if p not in ("self", "kwargs")]
        fake = [p for p in inspect.signature(getattr(fake_class, method)).parameters if p not in ("self", "kwargs")]
        assert fake == real, method


def test_the_real_client_sends_a_merge_patch():
    """The double applies RFC 7386 merge patches (null deletes): that is what the real client sends."""
    from kubernetes.client import ApiClient

    client = ApiClient()
    sent = {}

    def call_api(resource_path, method, path_params=None, query_params=None, header_params=None, body=None, **kwargs):
        sent.update(method=method, content_type=header_params["Content-Type"], body=body)

    client.call_api = call_api
    CustomObjectsApi(client).patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MODEL,
                                                            {"spec": {"canary": None}})
    assert sent == {"method": "PATCH", "content_type": "application/merge-patch+json",
                    "body": {"spec": {"canary": None}}}


# -- a Standard-mode cluster in miniature -----------------------------------------------------

class Deployment:
    """One predictor Deployment: a pod template (the version it runs) and its pods.

    Rolling update as KServe v0.20.0 configures it for one replica (deployment_reconciler.go:
    maxUnavailable 25% rounds down to 0, maxSurge 25% rounds up to 1): the new pod starts next
    to the old one, and the old one goes only when the new one is available. A pod of a
    broken version never becomes available, so the old pod keeps answering.
    """

    def __init__(self, name, version, cluster):
        self.name, self.cluster = name, cluster
        self.version = version
        self.generation = 1
        self.observed = 0
        self.pods = []  # [{"version": str, "available_at": tick or None}]

    def set_version(self, version):
        if version != self.version:
            self.version = version
            self.generation += 1

    def step(self, tick):
        self.observed = self.generation
        if not any(pod["version"] == self.version for pod in self.pods):
            ready_in = None if self.version in self.cluster.broken else self.cluster.pod_start_ticks
            self.pods.append({"version": self.version, "available_at": None if ready_in is None else tick + ready_in})
        new = [p for p in self.pods if p["version"] == self.version]
        if any(self.available(p, tick) for p in new):
            self.pods = new

    def available(self, pod, tick):
        return pod["available_at"] is not None and tick >= pod["available_at"]

    def available_versions(self):
        return [p["version"] for p in self.pods if self.available(p, self.cluster.ticks)]

    def as_json(self):
        tick = self.cluster.ticks
        updated = [p for p in self.pods if p["version"] == self.version]
        return {"metadata": {"name": self.name, "namespace": NAMESPACE, "generation": self.generation},
                "spec": {"replicas": 1, "template": {"metadata": {"labels": {VERSION_LABEL: self.version}}}},
                "status": {"observedGeneration": self.observed, "replicas": len(self.pods),
                           "updatedReplicas": len(updated),
                           "availableReplicas": sum(self.available(p, tick) for p in self.pods),
                           "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}}


class FakeCluster:
    """KServe's Standard-mode controller, the Deployment controller and Services, stepped on every read.

    - Deployments: ``{isvc}-predictor`` or ``{isvc}-{predictor.name}-predictor`` for the stable
      predictor, ``{isvc}-{canary.predictor.name}-predictor`` per canary; the pod template's
      version label comes from the InferenceService's labels, overridden by the predictor's
      (components/predictor.go ``buildObjectMeta``); Deployments no longer in the spec are
      deleted (``reconcileCanaryDeployments`` orphan cleanup).
    - Status: ``Ready`` follows the stable Deployment's Available (any available pod, since
      maxUnavailable is 0); ``observedGeneration`` is the *Deployment's*; ``modelStatus`` is
      read from the first pod listed (inference_service_status.go ``PropagateRawStatus`` /
      ``PropagateModelStatus``); ``canaryStatuses`` and ``CanaryPredictorReady`` per canary.
    - Services: a Service named like its Deployment sends each request to one of that
      Deployment's available pods, round robin; a pod of version N answers from the real model
      server of ``served[N]`` (normally N itself).
    Time is counted in events: every API read and every request routed is one tick.
    """

    def __init__(self, servers, broken=(), served=None, pod_start_ticks=4):
        self.servers = servers
        self.broken = set(broken)
        self.served = dict(served or {})
        self.pod_start_ticks = pod_start_ticks
        self.ticks = 0
        self.deployments = {}
        self.deleted = []
        self.api = FakeCustomObjectsApi(controller=self._on_read)
        self.apps = FakeAppsV1Api(self)
        self.router = None

    # the controllers
    def tick(self):
        self.ticks += 1
        isvc = self.api.objects.get((NAMESPACE, MODEL))
        self._reconcile(isvc)

    def _on_read(self, isvc, reads):
        self.tick()

    def _desired(self, isvc):
        if isvc is None:
            return {}
        labels = isvc["metadata"].get("labels") or {}
        predictor = isvc["spec"]["predictor"]
        wanted = {predictor_service_name(MODEL, predictor.get("name") or ""):
                  (predictor.get("labels") or {}).get(VERSION_LABEL, labels.get(VERSION_LABEL))}
        for canary in isvc["spec"].get("canary") or []:
            cp = canary["predictor"]
            wanted[predictor_service_name(MODEL, cp["name"])] = (cp.get("labels") or {}).get(
                VERSION_LABEL, labels.get(VERSION_LABEL))
        return wanted

    def _reconcile(self, isvc):
        wanted = self._desired(isvc)
        for name, version in wanted.items():
            if name not in self.deployments:
                self.deployments[name] = Deployment(name, version, self)
            self.deployments[name].set_version(version)
            self.deployments[name].step(self.ticks)
        for name in list(self.deployments):
            if name not in wanted:
                self.deleted.append(name)
                del self.deployments[name]
        if isvc is None:
            return
        # The controller's finalizer, added on its first reconcile
        # (pkg/controller/v1beta1/inferenceservice/controller.go).
        isvc["metadata"].setdefault("finalizers", ["inferenceservice.finalizers"])
        predictor = isvc["spec"]["predictor"]
        stable = self.deployments[predictor_service_name(MODEL, predictor.get("name") or "")]
        available = bool(stable.available_versions())
        first_pod = stable.pods[0] if stable.pods else None
        status = {
            "deploymentMode": "Standard",
            "observedGeneration": stable.observed,
            "address": {"url": f"http://{stable.name}.{NAMESPACE}.svc.cluster.local"},
            "conditions": [{"type": "Ready", "status": "True" if available else "False",
                            "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable"}],
            "modelStatus": {"transitionStatus": "UpToDate" if first_pod and stable.available(first_pod, self.ticks)
                            else "InProgress"},
        }
        canaries = isvc["spec"].get("canary") or []
        if canaries:
            entries = []
            for canary in canaries:
                deployment = self.deployments[predictor_service_name(MODEL, canary["predictor"]["name"])]
                entries.append({"name": canary["predictor"]["name"], "ready": bool(deployment.available_versions()),
                                "trafficPercent": canary["trafficPercent"]})
            status["canaryStatuses"] = entries
            all_ready = all(e["ready"] for e in entries)
            status["conditions"].append({"type": "CanaryPredictorReady", "status": "True" if all_ready else "False",
                                         "reason": "AllCanariesReady" if all_ready else "CanariesNotReady"})
        isvc["status"] = status

    # the Services
    def pick(self, service, counter=itertools.count()):
        self.tick()  # a request takes time too: the controllers move on
        deployment = self.deployments.get(service)
        versions = deployment.available_versions() if deployment else []
        if not versions:
            return None
        version = versions[next(counter) % len(versions)]
        return self.servers[self.served.get(version, version)]

    def base_url(self, service):
        return f"{self.router}/{service}"

    def existing(self, version):
        """A Ready InferenceService serving ``version``, as an earlier deploy left it."""
        body = build_inference_service(MODEL, f"s3://bucket/{MODEL}/v{version}", int(version), KServeSettings())
        self.api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        for _ in range(self.pod_start_ticks + 1):
            self.tick()
        assert self.deployments[f"{MODEL}-predictor"].available_versions() == [version]
        self.api.calls.clear()
        self.api.admitted.clear()
        return copy.deepcopy(self.api.objects[(NAMESPACE, MODEL)])


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards ``/<service>/<path>`` to a pod the cluster picks for that Service (503 when none is available)."""

    cluster = None
    faults = {}  # service -> number of requests to pass before answering 500

    def log_message(self, *args):
        pass

    def _forward(self):
        service, _, rest = self.path.lstrip("/").partition("/")
        budget = self.faults.get(service)
        if budget is not None:
            if budget <= 0:
                return self._answer(500, b'{"error": "injected fault"}')
            self.faults[service] = budget - 1
        target = self.cluster.pick(service)
        if target is None:
            return self._answer(503, b'{"error": "no available endpoints"}')
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        request = urllib.request.Request(f"{target}/{rest}", data=data, method=self.command,
                                         headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self._answer(response.status, response.read())
        except urllib.error.HTTPError as exc:
            self._answer(exc.code, exc.read())

    def _answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _forward


@pytest.fixture(scope="module")
def proxy():
    """A loopback HTTP proxy playing the cluster's Services (one thread per request)."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Proxy)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- real parts: a registry on the S3-compatible test server, real model servers --------------

@pytest.fixture(scope="module")
def s3_registry(s3_server, trained_model_dir):
    """A registry on the S3-compatible test server with three real versions (v1..v3) of one model."""
    import uuid

    from tollgate.s3 import client_from_env

    bucket = f"deploy-{uuid.uuid4().hex[:10]}"
    client_from_env().make_bucket(bucket)
    registry = open_registry(f"s3://{bucket}")
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    for _ in range(3):
        registry.register(MODEL, trained_model_dir, {key: metadata[key] for key in ("features", "test_metrics")
                                                     if key in metadata})
    return registry


def _start_server(model_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tollgate.serving", "--model-dir", str(model_dir), "--model-name", MODEL,
         "--http-port", str(port), "--no-grpc", "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(process, url):
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"model server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("model server did not become ready within 90 s")


@pytest.fixture(scope="module")
def model_servers(trained_model_dir, tmp_path_factory):
    """Real Tollgate model servers on 127.0.0.1 for versions "1" and "2" of the same trained model.

    Each serves a copy of the version directory whose metadata says its version, so its
    answers carry ``model_version`` "1" or "2", as a registry version directory does.
    """
    started = {}
    for version in ("1", "2"):
        directory = tmp_path_factory.mktemp(f"v{version}") / "model"
        shutil.copytree(trained_model_dir, directory)
        metadata = json.loads((directory / "metadata.json").read_text())
        metadata["version"] = int(version)
        (directory / "metadata.json").write_text(json.dumps(metadata))
        # An edited copy no longer matches its registry manifest, which the server would refuse.
        (directory / "_COMPLETE").unlink()
        started[version] = _start_server(directory)
    for process, url in started.values():
        _wait_ready(process, url)
    yield {version: url for version, (_, url) in started.items()}
    for process, _ in started.values():
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def cluster_factory(model_servers, proxy):
    """``cluster_factory(**kwargs)``: a fresh :class:`FakeCluster` reachable through the proxy."""
    def make(**kwargs):
        cluster = FakeCluster(model_servers, **kwargs)
        cluster.router = proxy
        _Proxy.cluster = cluster
        _Proxy.faults = {}
        return cluster
    return make


@pytest.fixture
def aliases_at_v1(s3_registry):
    """Production at v1 (no previous) before each test, whatever the last test left."""
    s3_registry.restore_aliases(MODEL, {"production": {"version": 1, "updated_at": "2026-11-20T00:00:00+00:00",
                                                       "reason": "test setup"}})
    return s3_registry.aliases(MODEL)


@pytest.fixture(scope="module")
def schema(trained_model_dir):
    return json.loads((trained_model_dir / "input_schema.json").read_text())


def _options(**kserve):
    values = {"ready_timeout_seconds": 20, "first_ready_timeout_seconds": 20, "poll_seconds": 0.01,
              "consecutive_answers": 3, "canary_observe_seconds": 0.2}
    values.update(kserve)
    return KServeSettings(**values)


def _deploy(cluster, registry, version, **kserve):
    return deploy_kserve(registry, MODEL, version, _options(**kserve), api=cluster.api, apps_api=cluster.apps,
                         base_url=cluster.base_url)


def _answers(cluster, schema, service=f"{MODEL}-predictor", times=6):
    return {tuple(sorted(served_versions(cluster.base_url(service), MODEL, schema).values())) for _ in range(times)}


# -- what the step builds --------------------------------------------------------------------

@pytest.mark.parametrize("mode, canary", [("Standard", None), ("Knative", 10)])
def test_built_inference_service_is_admitted_by_the_crd_and_the_webhook(mode, canary):
    settings = KServeSettings(deployment_mode=mode, canary_traffic_percent=canary)
    isvc = build_inference_service(MODEL, f"s3://models/{MODEL}/v3", 3, settings, canary=canary is not None)

    assert not kserve_errors(isvc) and not admission_errors(isvc) and not storage_problems(isvc)
    predictor = isvc["spec"]["predictor"]
    # Defect 1: no model.name (the webhook denies it); defect 4: the version directory ends with '/'.
    assert predictor["model"] == {"modelFormat": {"name": "tollgate"}, "runtime": "tollgate",
                                  "storageUri": f"s3://models/{MODEL}/v3/"}
    assert predictor["serviceAccountName"] == "tollgate-models"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
    assert predictor.get("canaryTrafficPercent") == canary


def test_the_old_inference_service_would_have_been_denied():
    """What the step sent before (model.name set, no trailing slash): the webhook's denial and the prefix trap."""
    isvc = build_inference_service(MODEL, f"s3://models/{MODEL}/v1", 1, KServeSettings())
    isvc["spec"]["predictor"]["model"]["name"] = "kserve-container"
    isvc["spec"]["predictor"]["model"]["storageUri"] = f"s3://models/{MODEL}/v1"
    assert not kserve_errors(isvc), "the CRD schema lets it through: only the webhook refuses it"
    assert "the 'name' field is not allowed in standard predictor" in admission_errors(isvc)[0]
    assert "v10/" not in storage_problems(isvc)[0] and "trailing '/'" in storage_problems(isvc)[0]


def test_standard_canary_entry_is_admitted():
    stable = build_inference_service(MODEL, f"s3://models/{MODEL}/v1", 1, KServeSettings())
    settings = KServeSettings(canary_traffic_percent=20)
    with_canary = copy.deepcopy(stable)
    with_canary["spec"]["canary"] = [standard_canary(f"s3://models/{MODEL}/v2", 2, settings, canary_name(2, ""))]
    assert not kserve_errors(with_canary)
    assert not admission_errors(with_canary, stable)
    assert with_canary["spec"]["canary"][0]["predictor"]["name"] == "v2"
    assert with_canary["spec"]["canary"][0]["trafficPercent"] == 20
    assert canary_name(2, "v2") == "v2-canary"
    knative = copy.deepcopy(with_canary)
    knative["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "Knative"
    assert "only supported in Standard" in admission_errors(knative)[0]


# -- first deploy and updates (Standard mode) --------------------------------------------------

def test_first_deploy_creates_proves_and_moves_the_aliases(cluster_factory, s3_registry, aliases_at_v1, schema):
    cluster = cluster_factory()

    result = _deploy(cluster, s3_registry, 2)

    assert cluster.api.verbs() == ["create"]
    stored = cluster.api.objects[(NAMESPACE, MODEL)]
    assert stored["spec"]["predictor"]["model"]["storageUri"] == s3_registry.get_version(MODEL, 2).uri.rstrip("/") + "/"
    assert "name" not in stored["spec"]["predictor"]["model"]
    assert _answers(cluster, schema) == {("2", "2")}
    assert "created" in result.detail and "3 consecutive v1+v2 answers from v2" in result.detail
    assert s3_registry.alias_version(MODEL, "production") == 2
    assert s3_registry.alias_version(MODEL, "previous") == 1


def test_update_is_not_done_while_the_old_pod_still_answers(cluster_factory, s3_registry, aliases_at_v1, schema):
    """Defect 2: Ready stays True through the rolling update; only the rollout and the answers prove it."""
    cluster = cluster_factory(pod_start_ticks=8)
    cluster.existing("1")
    seen_ready_while_old_answered = []

    original = cluster._reconcile

    def watching(isvc):
        original(isvc)
        if isvc and isvc.get("status"):
            stable = cluster.deployments[f"{MODEL}-predictor"]
            if isvc["status"]["conditions"][0]["status"] == "True" and "1" in stable.available_versions():
                seen_ready_while_old_answered.append(cluster.ticks)

    cluster._reconcile = watching
    result = _deploy(cluster, s3_registry, 2)

    assert seen_ready_while_old_answered, "the double must show Ready=True while v1 still serves"
    assert cluster.api.verbs() == ["patch"]
    assert cluster.deployments[f"{MODEL}-predictor"].pods == [p for p in cluster.deployments[f"{MODEL}-predictor"].pods
                                                             if p["version"] == "2"]
    assert _answers(cluster, schema) == {("2", "2")}
    assert "patched" in result.detail
    assert s3_registry.alias_version(MODEL, "production") == 2


def test_a_version_that_never_becomes_available_is_rolled_back(cluster_factory, s3_registry, aliases_at_v1, schema):
    """Defect 2: the new pod cannot start, the old one keeps serving and Ready stays True: restore."""
    cluster = cluster_factory(broken={"2"})
    previous = cluster.existing("1")

    with pytest.raises(DeployError) as raised:
        _deploy(cluster, s3_registry, 2, ready_timeout_seconds=1)

    message = str(raised.value)
    assert "1 of 1 pods updated, 1 available, 1 old pod(s) still running" in message
    assert "restored the previous spec" in message and "production -> v1" in message
    assert cluster.api.verbs() == ["patch", "replace"]
    restored = cluster.api.objects[(NAMESPACE, MODEL)]
    assert restored["spec"] == previous["spec"]
    assert restored["metadata"]["labels"] == previous["metadata"]["labels"]
    # The replace is a PUT: the controller's finalizer must survive it.
    assert cluster.api.calls[-1][2]["metadata"]["finalizers"] == ["inferenceservice.finalizers"]
    cluster.tick()
    assert _answers(cluster, schema) == {("1", "1")}
    assert s3_registry.aliases(MODEL) == aliases_at_v1


def test_a_rollout_that_answers_with_the_wrong_version_is_rolled_back(cluster_factory, s3_registry, aliases_at_v1):
    """The Deployment rolls out, but what answers is not v2 (e.g. a stale copy under v2/): restore."""
    cluster = cluster_factory(served={"2": "1"})
    cluster.existing("1")

    with pytest.raises(DeployError) as raised:
        _deploy(cluster, s3_registry, 2, ready_timeout_seconds=1)

    message = str(raised.value)
    assert "still serving {'v1': '1', 'v2': '1'} (wanted model_version '2')" in message
    assert "restored the previous spec" in message
    assert s3_registry.aliases(MODEL) == aliases_at_v1


def test_without_the_deployment_check_answers_alone_still_prove(cluster_factory, s3_registry, aliases_at_v1, schema):
    cluster = cluster_factory(pod_start_ticks=6)
    cluster.existing("1")

    deploy_kserve(s3_registry, MODEL, 2, _options(consecutive_answers=4), api=cluster.api, apps_api=None,
                  base_url=cluster.base_url)

    assert _answers(cluster, schema) == {("2", "2")}


def test_failed_load_restores_the_previous_spec_and_aliases(s3_registry, aliases_at_v1, model_servers):
    api = FakeCustomObjectsApi()
    body = build_inference_service(MODEL, f"s3://bucket/{MODEL}/v1", 1, KServeSettings())
    api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
    previous = copy.deepcopy(api.objects[(NAMESPACE, MODEL)])
    api.calls.clear()

    def fails_to_load(isvc, reads):
        isvc["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed"}],
                          "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
                                          "lastFailureInfo": {"reason": "ModelLoadFailed",
                                                              "message": "model.joblib: unpickling error"}}}
    api.controller = fails_to_load

    with pytest.raises(DeployError) as raised:
        deploy_kserve(s3_registry, MODEL, 2, _options(), api=api, base_url=lambda s: model_servers["2"])

    message = str(raised.value)
    assert "BlockedByFailedLoad" in message and "unpickling error" in message
    assert "restored the previous spec" in message and "production -> v1" in message
    assert api.verbs() == ["patch", "replace"]
    assert api.objects[(NAMESPACE, MODEL)]["spec"] == previous["spec"]
    assert s3_registry.aliases(MODEL) == aliases_at_v1


def test_timeout_names_the_condition_that_is_not_ready(s3_registry, aliases_at_v1):
    api = FakeCustomObjectsApi()

    def stuck(isvc, reads):
        isvc["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                                          "message": "ImagePullBackOff"}]}

    api.controller = stuck
    started = time.monotonic()
    with pytest.raises(DeployError) as raised:
        deploy_kserve(s3_registry, MODEL, 2, _options(first_ready_timeout_seconds=0.3), api=api)

    assert time.monotonic() - started < 5
    assert "not Ready after 0.3 s" in str(raised.value) and "ImagePullBackOff" in str(raised.value)
    assert api.verbs() == ["create", "delete"]
    assert s3_registry.alias_version(MODEL, "production") == 1


def test_first_deploy_waits_with_the_first_deploy_timeout():
    settings = KServeSettings.from_config(load_config().deploy.kserve)
    assert settings.first_ready_timeout_seconds >= 600 > settings.ready_timeout_seconds


# -- errors keep their cause (defect 3) -----------------------------------------------------------

def test_a_webhook_denial_shows_its_message_and_nothing_is_restored(s3_registry, aliases_at_v1):
    message = "the 'name' field is not allowed in standard predictor"
    api = FakeCustomObjectsApi(deny={"create": message})

    with pytest.raises(DeployError) as raised:
        deploy_kserve(s3_registry, MODEL, 2, _options(), api=api)

    text = str(raised.value)
    assert f'admission webhook "{WEBHOOK_NAME}" denied the request: {message}' in text and "403" in text
    assert "Role" not in text, "a webhook denial is not an RBAC problem"
    assert "nothing to restore" in text and "could NOT restore" not in text
    assert api.verbs() == ["create", "delete"]
    assert s3_registry.aliases(MODEL) == aliases_at_v1


def test_rbac_refusal_names_the_role_file_that_exists(s3_registry, aliases_at_v1):
    api = FakeCustomObjectsApi(forbidden={"create", "delete"})

    with pytest.raises(DeployError) as raised:
        deploy_kserve(s3_registry, MODEL, 2, _options(), api=api)

    text = str(raised.value)
    assert "403" in text and 'cannot create resource "inferenceservices"' in text
    role_file = "manifests/base/kfp/deployer-rbac.yaml"
    assert role_file in text and (REPO / role_file).is_file()
    assert s3_registry.alias_version(MODEL, "production") == 1


def test_the_module_names_the_real_rbac_file():
    import tollgate.cluster.kserve as kserve_module

    assert "manifests/base/kfp-access" not in inspect.getsource(kserve_module)


# -- canary --------------------------------------------------------------------------------------

def test_standard_canary_is_proven_observed_and_promoted(cluster_factory, s3_registry, aliases_at_v1, schema):
    cluster = cluster_factory()
    cluster.existing("1")

    result = _deploy(cluster, s3_registry, 2, canary_traffic_percent=20)

    patches = [call[2] for call in cluster.api.calls if call[0] == "patch"]
    assert len(patches) == 2
    (entry,) = patches[0]["spec"]["canary"]
    assert entry["trafficPercent"] == 20 and entry["predictor"]["name"] == "v2"
    assert entry["predictor"]["model"]["storageUri"].endswith("/v2/")
    assert "metadata" not in patches[0], "the stable pods must not restart while the canary runs"
    promotion = patches[1]
    assert promotion["spec"]["canary"] is None and promotion["spec"]["predictor"]["name"] == "v2"
    assert promotion["spec"]["predictor"]["model"]["storageUri"].endswith("/v2/")
    stored = cluster.api.objects[(NAMESPACE, MODEL)]
    assert "canary" not in stored["spec"] and stored["metadata"]["labels"][VERSION_LABEL] == "2"
    # The canary's Deployment became the stable one; the old one was cleaned up.
    assert set(cluster.deployments) == {f"{MODEL}-v2-predictor"} and f"{MODEL}-predictor" in cluster.deleted
    assert _answers(cluster, schema, service=f"{MODEL}-v2-predictor") == {("2", "2")}
    assert "canary 20% then promoted" in result.detail and "no errors" in result.detail
    assert s3_registry.alias_version(MODEL, "production") == 2
    # Every write passed the webhook oracle as an update of what was stored.
    assert [verb for verb, _ in cluster.api.admitted] == ["patch", "patch"]


def test_a_canary_that_never_becomes_ready_is_removed(cluster_factory, s3_registry, aliases_at_v1, schema):
    cluster = cluster_factory(broken={"2"})
    previous = cluster.existing("1")

    with pytest.raises(DeployError) as raised:
        _deploy(cluster, s3_registry, 2, canary_traffic_percent=20, ready_timeout_seconds=1)

    message = str(raised.value)
    assert "canary v2" in message and "CanariesNotReady" in message and "restored the previous spec" in message
    assert cluster.api.objects[(NAMESPACE, MODEL)]["spec"] == previous["spec"]
    cluster.tick()
    assert set(cluster.deployments) == {f"{MODEL}-predictor"}
    assert _answers(cluster, schema) == {("1", "1")}
    assert s3_registry.aliases(MODEL) == aliases_at_v1


def test_a_canary_that_errors_while_observed_is_removed(cluster_factory, s3_registry, aliases_at_v1):
    cluster = cluster_factory()
    previous = cluster.existing("1")
    # The proof needs 3 rounds of 2 calls and the observation starts with one /metrics scrape;
    # after those 7, every call to the canary answers 500.
    _Proxy.faults = {f"{MODEL}-v2-predictor": 7}

    with pytest.raises(DeployError) as raised:
        _deploy(cluster, s3_registry, 2, canary_traffic_percent=20, canary_observe_seconds=5)

    message = str(raised.value)
    assert "failed while observed" in message and "answered 500" in message
    assert cluster.api.objects[(NAMESPACE, MODEL)]["spec"] == previous["spec"]
    assert s3_registry.aliases(MODEL) == aliases_at_v1


def test_knative_canary_keeps_canary_traffic_percent(s3_registry, aliases_at_v1, model_servers):
    api = FakeCustomObjectsApi()
    settings = KServeSettings(deployment_mode="Knative")
    api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                        build_inference_service(MODEL, f"s3://b/{MODEL}/v1", 1, settings))
    api.calls.clear()
    generations = {}

    def knative(isvc, reads):
        generation = isvc["metadata"]["generation"]
        generations.setdefault(generation, reads)
        if reads - generations[generation] >= 1:
            isvc["status"] = {"observedGeneration": generation, "address": {"url": "http://x"},
                              "conditions": [{"type": "Ready", "status": "True"}]}

    api.controller = knative
    result = deploy_kserve(s3_registry, MODEL, 2, _options(deployment_mode="Knative", canary_traffic_percent=10),
                           api=api, base_url=lambda service: model_servers["2"])

    patches = [call[2] for call in api.calls if call[0] == "patch"]
    assert [p["spec"]["predictor"].get("canaryTrafficPercent") for p in patches] == [10, None]
    assert all(p["spec"]["canary"] is None for p in patches)
    stored = api.objects[(NAMESPACE, MODEL)]
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert "canary 10%" in result.detail


def test_canary_is_skipped_when_the_same_version_already_serves(cluster_factory, s3_registry, aliases_at_v1):
    """A canary needs a model change (webhook validatePredictorNameChange); re-deploying v1 is a plain patch."""
    cluster = cluster_factory()
    cluster.existing("1")
    s3_uri = s3_registry.get_version(MODEL, 1).uri
    cluster.api.objects[(NAMESPACE, MODEL)]["spec"]["predictor"]["model"]["storageUri"] = s3_uri.rstrip("/") + "/"

    _deploy(cluster, s3_registry, 1, canary_traffic_percent=20)

    (patch,) = [call[2] for call in cluster.api.calls if call[0] == "patch"]
    assert patch["spec"]["canary"] is None


# -- small pieces ---------------------------------------------------------------------------------

def test_kserve_target_needs_an_s3_registry(tmp_path, trained_model_dir):
    registry = open_registry(str(tmp_path / "registry"))
    registry.register(MODEL, trained_model_dir, {})
    with pytest.raises(DeployError, match="s3:// registry"):
        deploy_kserve(registry, MODEL, 1, _options(), api=FakeCustomObjectsApi())
    assert registry.aliases(MODEL) == {}


def test_config_feeds_the_rollout_settings_and_allows_a_standard_canary():
    config = load_config(None, {"deploy.target": "kserve", "deploy.kserve.canary_traffic_percent": 25,
                                "deploy.kserve.canary_observe_seconds": 30})
    settings = KServeSettings.from_config(config.deploy.kserve, config.monitoring)
    assert (settings.namespace, settings.runtime, settings.deployment_mode) == ("tollgate", "tollgate", "Standard")
    assert (settings.canary_traffic_percent, settings.canary_observe_seconds) == (25, 30)


def test_unknown_target_is_refused(s3_registry):
    with pytest.raises(TollgateError, match="'local' or 'kserve'"):
        deploy("seldon", s3_registry, MODEL, 1)


def test_readiness_reads_terminal_and_pending_states():
    stale = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2,
                                                       "conditions": [{"type": "Ready", "status": "True"}]}}
    assert readiness(stale, 3)[0] == "pending"
    # Standard mode: observedGeneration is the Deployment's and must not hold the rollout up.
    assert readiness(stale, 3, use_observed_generation=False)[0] == "ready"
    assert readiness({"status": {}}, 1) == ("pending", "no Ready condition yet")
    invalid = {"status": {"modelStatus": {"transitionStatus": "InvalidSpec"}}}
    assert readiness(invalid, 1) == ("failed", "model status InvalidSpec: InvalidSpec")
    assert KServeDeployer(FakeCustomObjectsApi(), KServeSettings()).get("absent") is None
    with pytest.raises(DeployError, match="DNS-1035"):
        KServeDeployer(FakeCustomObjectsApi(), KServeSettings()).rollout("7-eleven", "s3://m/7-eleven/v1", 1, {})


def test_deployment_rollout_reads_the_deployment_status():
    def deployment(label="2", generation=2, observed=2, replicas=1, updated=1, available=1, progressing="True"):
        return {"metadata": {"name": "d", "generation": generation},
                "spec": {"replicas": 1, "template": {"metadata": {"labels": {VERSION_LABEL: label}}}},
                "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                           "availableReplicas": available,
                           "conditions": [{"type": "Progressing", "status": progressing,
                                           "reason": "ProgressDeadlineExceeded", "message": "too slow"}]}}

    assert deployment_rollout(deployment(), 2)[0] == "ready"
    assert deployment_rollout(deployment(label="1"), 2)[0] == "pending"
    assert deployment_rollout(deployment(observed=1), 2)[0] == "pending"
    assert deployment_rollout(deployment(replicas=2, available=2), 2) == (
        "pending", "Deployment d: 1 of 1 pods updated, 2 available, 1 old pod(s) still running")
    assert deployment_rollout(deployment(progressing="False"), 2)[0] == "failed"


def test_deployment_rollout_reads_what_the_real_client_returns():
    """KServeDeployer.get_deployment serializes the client's V1Deployment the way the API sends it."""
    from kubernetes.client import (
        ApiClient,
        V1Deployment,
        V1DeploymentSpec,
        V1DeploymentStatus,
        V1LabelSelector,
        V1ObjectMeta,
        V1PodTemplateSpec,
    )

    deployment = V1Deployment(
        metadata=V1ObjectMeta(name="credit-default-predictor", generation=3),
        spec=V1DeploymentSpec(replicas=1, selector=V1LabelSelector(),
                              template=V1PodTemplateSpec(metadata=V1ObjectMeta(labels={VERSION_LABEL: "2"}))),
        status=V1DeploymentStatus(observed_generation=3, replicas=2, updated_replicas=1, available_replicas=2))
    as_json = ApiClient().sanitize_for_serialization(deployment)
    assert deployment_rollout(as_json, 2) == ("pending", "Deployment credit-default-predictor: 1 of 1 pods updated, "
                                                         "2 available, 1 old pod(s) still running")
    deployment.status.replicas = 1
    deployment.status.available_replicas = 1
    assert deployment_rollout(ApiClient().sanitize_for_serialization(deployment), 2)[0] == "ready"


def test_metrics_errors_counts_server_errors_only():
    text = ('# TYPE http_requests counter\n'
            'http_requests_total{code="200"} 7\n'
            'http_requests_total{code="503"} 2\n'
            '# TYPE grpc_calls counter\n'
            'grpc_calls_total{status="INTERNAL"} 1\n'
            '# TYPE request_predict_seconds histogram\n'
            'request_predict_seconds_count{model_name="m"} 9\n')
    assert metrics_errors(text) == 3
    assert metrics_errors("") == 0


def test_examples_are_admitted_by_the_webhook():
    import yaml

    for path in sorted((REPO / "manifests" / "examples").glob("*.yaml")):
        for obj in (doc for doc in yaml.safe_load_all(path.read_text()) if doc):
            if obj.get("kind") == "InferenceService":
                assert not admission_errors(obj), path
                assert not storage_problems(obj), path


def test_the_e2e_broken_version_check_sees_a_rollback(cluster_factory, s3_registry, aliases_at_v1, schema,
                                                       tmp_path):
    """scripts/e2e_kind.py broken-deploy, run against the simulated cluster instead of kind: it
    registers a copy of production whose model.onnx cannot load, deploys it with the deploy
    step and passes only if the step fails, restores, and v1 still answers."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import e2e_kind
    finally:
        sys.path.pop(0)
    broken = max(s3_registry.store.version_numbers(MODEL)) + 1
    cluster = cluster_factory(broken={str(broken)})
    cluster.existing("1")
    checked = []

    def check_answers(version):
        checked.append(version)
        return 0 if _answers(cluster, schema) == {(str(version), str(version))} else 1

    status = e2e_kind.broken_deploy(1, registry=s3_registry, model=MODEL, check_answers=check_answers,
                                    api=cluster.api, apps_api=cluster.apps, base_url=cluster.base_url)

    assert status == 0 and checked == [1]
    assert s3_registry.aliases(MODEL) == aliases_at_v1
    assert cluster.api.verbs() == ["patch", "replace"]
    directory = s3_registry.download(MODEL, broken, tmp_path / "broken")
    assert (directory / "model.onnx").read_bytes().startswith(b"this is not a graph")


def test_a_role_without_deployments_get_is_named(cluster_factory, s3_registry, aliases_at_v1):
    """A cluster whose Role predates the Deployment check: the 403 says which verb and which file grants it."""
    cluster = cluster_factory()
    previous = cluster.existing("1")

    def forbidden(name, namespace, **kwargs):
        raise _api_exception(403, "Forbidden", f'deployments.apps "{name}" is forbidden: User '
                             f'"system:serviceaccount:kubeflow:pipeline-runner" cannot get resource "deployments" '
                             f'in API group "apps" in the namespace "{namespace}"')

    cluster.apps.read_namespaced_deployment = forbidden
    with pytest.raises(DeployError) as raised:
        _deploy(cluster, s3_registry, 2)

    text = str(raised.value)
    assert f"cannot read Deployment {NAMESPACE}/{MODEL}-predictor: 403 Forbidden" in text
    assert "manifests/base/kfp/deployer-rbac.yaml" in text and "restored the previous spec" in text
    assert cluster.api.objects[(NAMESPACE, MODEL)]["spec"] == previous["spec"]
    assert s3_registry.aliases(MODEL) == aliases_at_v1


# -- the prediction log passes through (issue 15) ---------------------------------------------

def test_monitoring_setting_reaches_the_model_server_as_args_and_secret_env():
    """KServe v0.20 appends a predictor model's args to the runtime container's
    (pkg/controller/v1beta1/inferenceservice/utils/utils.go, ``MergeRuntimeContainers``: "Args are
    concatenated (runtime + isvc)"), so the --log-* flags reach ``python -m tollgate.serving``."""
    from tollgate.serving.__main__ import build_parser

    config = load_config(None, {"monitoring.log_uri": "s3://monitoring/logs", "monitoring.sample_rate": 0.5})
    settings = KServeSettings.from_config(config.deploy.kserve, config.monitoring)
    isvc = build_inference_service(MODEL, f"s3://models/{MODEL}/v3", 3, settings)
    assert not kserve_errors(isvc) and not admission_errors(isvc) and not storage_problems(isvc)
    model = isvc["spec"]["predictor"]["model"]
    assert model["envFrom"] == [{"secretRef": {"name": "tollgate-models-s3"}}]
    runtime_args = ["--model-name=m", "--model-dir=/mnt/models", "--http-port=8080", "--grpc-port=8081"]
    parsed = build_parser().parse_args(runtime_args + model["args"])
    assert (parsed.log_uri, parsed.log_sample_rate, parsed.log_flush_records) == ("s3://monitoring/logs", 0.5, 1000)
    # The canary predictor carries the same flags; without monitoring nothing is added.
    canary = standard_canary(f"s3://models/{MODEL}/v4", 4, settings, "v4")
    assert canary["predictor"]["model"]["args"] == model["args"]
    plain = build_inference_service(MODEL, f"s3://models/{MODEL}/v3", 3,
                                    KServeSettings.from_config(config.deploy.kserve))
    assert "args" not in plain["spec"]["predictor"]["model"] and "envFrom" not in plain["spec"]["predictor"]["model"]
    local = KServeSettings.from_config(config.deploy.kserve, MonitoringConfig(log_uri="/var/log/tollgate"))
    assert local.log_secret is None and "--log-uri=/var/log/tollgate" in local.log_args


def test_kind_overlay_gives_the_model_server_an_s3_endpoint():
    import yaml

    overlay = yaml.safe_load((Path(__file__).parent.parent / "manifests/overlays/kind/kustomization.yaml").read_text())
    secret = next(s for s in overlay["secretGenerator"] if s["name"] == "tollgate-models-s3")
    assert "S3_ENDPOINT=http://minio.minio.svc.cluster.local:9000" in secret["literals"]


def test_the_dag_s_deploy_settings_become_the_rollout_s():
    from tollgate.settings import DeploySettings
    from tollgate.steps.deploy import rollout_settings

    config = load_config(None, {"deploy.target": "kserve", "deploy.kserve.namespace": "models",
                                "deploy.kserve.canary_traffic_percent": 10, "monitoring.log_uri": "s3://logs/p"})
    settings = DeploySettings.from_json(DeploySettings.from_config(config).to_json())  # as the task receives them
    rollout = rollout_settings(settings)
    assert rollout is not None and (rollout.namespace, rollout.canary_traffic_percent) == ("models", 10)
    assert rollout.log_args[0] == "--log-uri=s3://logs/p" and rollout.log_secret == "tollgate-models-s3"
    assert rollout_settings(DeploySettings.from_config(load_config(None, {"deploy.target": "local"}))) is None
