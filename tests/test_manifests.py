"""manifests/: what `make cluster-up` applies, checked statically.

No cluster runs in CI (nor on this machine): these tests render every kustomization of ours
offline with `kubectl kustomize`, validate KServe kinds against the real KServe v0.20.0 CRD
schemas (../shared/schemas beside the repository) and built-in kinds with
kubernetes-validate, and check that the manifests, the kind port mappings, the config
defaults and the compiled pipeline agree with each other.
"""

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from tollgate.config import load_config

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
KSERVE_SCHEMAS = REPO.parent / "shared" / "schemas" / "kserve-v0.20.0"
KSERVE_KINDS = {
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml",
}
KUBERNETES_VERSION = "1.33.0"  # the kind node image (manifests/kind/cluster.yaml)
# Where KFP standalone (env/platform-agnostic) runs pipeline pods: its manifests fix the namespace.
KFP_NAMESPACE = "kubeflow"
KUSTOMIZATIONS = sorted(path.parent for path in MANIFESTS.rglob("kustomization.yaml"))
OVERLAYS = [path for path in KUSTOMIZATIONS if path.parent.name == "overlays"]


def render(directory: Path) -> list[dict]:
    """`kubectl kustomize <directory>` as a list of objects."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed, so kustomizations cannot be rendered here")
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def kind_objects() -> list[dict]:
    return render(MANIFESTS / "overlays" / "kind")


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


# -- KServe CRD schemas ----------------------------------------------------------------------

def _unknown_fields(value, schema: dict, path: str) -> list[str]:
    """Keys the CRD does not declare: the API server would silently prune them (a typo's symptom)."""
    problems = []
    if isinstance(value, dict) and "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        for key, item in value.items():
            if key not in schema["properties"]:
                problems.append(f"{path}.{key}: not a field of the CRD (would be pruned)")
            else:
                problems.extend(_unknown_fields(item, schema["properties"][key], f"{path}.{key}"))
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            problems.extend(_unknown_fields(item, schema["additionalProperties"], f"{path}.{key}"))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems.extend(_unknown_fields(item, schema["items"], f"{path}[{index}]"))
    return problems


@functools.cache
def _crd_schema(kind: str, api_version: str) -> dict:
    path = KSERVE_SCHEMAS / KSERVE_KINDS[kind]
    if not path.is_file():
        pytest.skip(f"KServe CRD schemas not found at {path} (CI clones main with shared/ beside it)")
    # The InferenceService CRD is 2 MB of YAML: the C loader, once per session.
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return next(v for v in crd["spec"]["versions"] if v["name"] == api_version)["schema"]["openAPIV3Schema"]


def kserve_errors(obj: dict) -> list[str]:
    """Every way ``obj`` breaks its KServe v0.20.0 CRD schema (empty list = valid)."""
    import jsonschema

    schema = _crd_schema(obj["kind"], obj["apiVersion"].split("/")[1])
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]
    return errors + _unknown_fields({k: v for k, v in obj.items() if k != "status"}, schema, obj["kind"])


def builtin_errors(obj: dict) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"]
    return []


# -- rendering -------------------------------------------------------------------------------

def test_there_is_an_overlay_and_each_base_is_used():
    assert OVERLAYS, "manifests/overlays/<name>/kustomization.yaml is missing"
    bases = {path for path in KUSTOMIZATIONS if path.parent.name == "base"}
    referenced = set()
    for overlay in OVERLAYS:
        for entry in yaml.safe_load((overlay / "kustomization.yaml").read_text()).get("resources", []):
            referenced.add((overlay / entry).resolve())
    assert bases <= referenced, f"bases no overlay uses: {sorted(map(str, bases - referenced))}"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_kustomization_renders_offline(directory):
    objects = render(directory)
    assert objects, f"{directory} renders to nothing"


def test_no_remote_bases_in_our_kustomizations():
    """Third-party installs are applied by cluster.sh, so CI can render all of ours offline."""
    for directory in KUSTOMIZATIONS:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        for entry in kustomization.get("resources", []) + kustomization.get("components", []):
            assert not re.search(r"(://|github\.com/|\?ref=)", entry), f"remote reference {entry!r} in {directory}"
            assert (directory / entry).exists(), f"{directory}: {entry} does not exist"


# -- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_object_validates(directory):
    problems = []
    for obj in render(directory):
        problems += kserve_errors(obj) if obj["kind"] in KSERVE_KINDS else builtin_errors(obj)
    assert not problems, "\n".join(problems)


def plain_manifests() -> list[Path]:
    """YAML files of Kubernetes objects that no kustomization renders (examples)."""
    rendered_dirs = set(KUSTOMIZATIONS)
    return sorted(path for path in MANIFESTS.rglob("*.yaml")
                  if path.parent not in rendered_dirs and path.name != "kustomization.yaml"
                  and path.parent.name != "kind")


def test_example_files_validate_and_match_the_deploy_step():
    from tollgate.cluster.kserve import KServeSettings, build_inference_service

    examples = plain_manifests()
    assert examples, "manifests/examples/inferenceservice.yaml is missing"
    for path in examples:
        for obj in (doc for doc in yaml.safe_load_all(path.read_text()) if doc):
            errors = kserve_errors(obj) if obj["kind"] in KSERVE_KINDS else builtin_errors(obj)
            assert not errors, f"{path}: {errors}"
    example = yaml.safe_load((MANIFESTS / "examples" / "inferenceservice.yaml").read_text())
    model = load_config().model_name
    assert example == build_inference_service(model, f"s3://models/{model}/v1", 1, KServeSettings())


def test_canary_example_matches_the_deploy_step():
    from tollgate.cluster.kserve import KServeSettings, build_inference_service, canary_name, standard_canary

    example = yaml.safe_load((MANIFESTS / "examples" / "inferenceservice-canary.yaml").read_text())
    model = load_config().model_name
    expected = build_inference_service(model, f"s3://models/{model}/v1", 1, KServeSettings())
    canary = KServeSettings(canary_traffic_percent=20)
    expected["spec"]["canary"] = [standard_canary(f"s3://models/{model}/v2", 2, canary, canary_name(2, ""))]
    assert example == expected and not kserve_errors(example)


def test_validators_reject_broken_objects(kind_objects):
    runtime = find(kind_objects, "ClusterServingRuntime", "tollgate")
    broken_runtime = yaml.safe_load(yaml.safe_dump(runtime))
    broken_runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    broken_runtime["spec"]["supportedModelFormat"] = broken_runtime["spec"].pop("supportedModelFormats")
    errors = kserve_errors(broken_runtime)
    assert any("containerPort" in e for e in errors) and any("supportedModelFormat" in e for e in errors)
    service = yaml.safe_load(yaml.safe_dump(find(kind_objects, "Service", "minio")))
    service["spec"]["ports"][0]["nodePort"] = "30900"
    service["spec"]["typo"] = True
    assert builtin_errors(service)


# -- what KServe, KFP and MinIO need ---------------------------------------------------------

def test_serving_runtime_serves_the_tollgate_format_with_named_ports(kind_objects):
    runtime = find(kind_objects, "ClusterServingRuntime", "tollgate")
    spec = runtime["spec"]
    assert [f["name"] for f in spec["supportedModelFormats"]] == ["tollgate"]
    assert spec["supportedModelFormats"][0]["autoSelect"] is True
    assert {"v1", "v2", "grpc-v2"} <= set(spec["protocolVersions"])
    container = spec["containers"][0]
    assert container["name"] == "kserve-container"
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert container["args"] == ["--model-name={{.Name}}", "--model-dir=/mnt/models", "--http-port=8080",
                                 "--grpc-port=8081"]
    assert container["securityContext"]["runAsNonRoot"] is True


def test_runtime_flags_are_flags_of_the_model_server(kind_objects):
    from tollgate.serving.__main__ import build_parser

    container = find(kind_objects, "ClusterServingRuntime", "tollgate")["spec"]["containers"][0]
    args = [a.replace("{{.Name}}", "credit-default") for a in container["args"]]
    options = build_parser().parse_args(args)
    assert (options.model_dir, options.http_port, options.grpc_port) == ("/mnt/models", 8080, 8081)


def test_grpc_service_targets_8081_with_a_grpc_port_name(kind_objects):
    service = find(kind_objects, "Service", "credit-default-grpc")
    port = service["spec"]["ports"][0]
    assert port["name"].startswith("grpc-") and port["targetPort"] == 8081
    model_name = load_config().model_name
    assert service["spec"]["selector"] == {"serving.kserve.io/inferenceservice": model_name}


def test_storage_initializer_secret_and_service_account(kind_objects):
    cfg = load_config().deploy.kserve
    account = find(kind_objects, "ServiceAccount", cfg.service_account)
    assert account["metadata"]["namespace"] == cfg.namespace
    (secret_ref,) = account["secrets"]
    secret = find(kind_objects, "Secret", secret_ref["name"])
    annotations = secret["metadata"]["annotations"]
    endpoint = annotations["serving.kserve.io/s3-endpoint"]
    assert "://" not in endpoint and re.fullmatch(r"[a-z0-9.-]+:\d+", endpoint), "host:port, no scheme"
    assert annotations["serving.kserve.io/s3-usehttps"] == "0"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["data"])
    minio = find(kind_objects, "Service", "minio")
    assert endpoint == f"minio.{minio['metadata']['namespace']}.svc.cluster.local:{minio['spec']['ports'][0]['port']}"
    assert find(kind_objects, "ClusterServingRuntime", cfg.runtime)


def test_every_secret_is_marked_as_dev_only(kind_objects):
    secrets = [o for o in kind_objects if o["kind"] == "Secret"]
    assert len(secrets) == 3
    for secret in secrets:
        assert secret["metadata"]["labels"]["tollgate.io/credentials"] == "dev-only-kind"
        assert "kind cluster only" in secret["metadata"]["annotations"]["tollgate.io/warning"]
    assert "KIND CLUSTER ONLY" in (MANIFESTS / "overlays" / "kind" / "dev-credentials.env").read_text()


def test_pipeline_pods_get_the_s3_secret_they_are_compiled_with(kind_objects):
    from tollgate.pipelines.training import S3_SECRET_KEYS

    cfg = load_config()
    secret = find(kind_objects, "Secret", cfg.kfp.s3_secret)
    assert secret["metadata"]["namespace"] == KFP_NAMESPACE
    assert set(S3_SECRET_KEYS) == set(secret["data"])


def _verbs_the_deployer_uses() -> dict[tuple[str, str], set[str]]:
    """API verbs tollgate/cluster/kserve.py calls, read from its source: (group, resource) -> RBAC verbs."""
    source = (REPO / "tollgate" / "cluster" / "kserve.py").read_text()
    to_rbac = {"get": "get", "create": "create", "patch": "patch", "replace": "update", "delete": "delete",
               "list": "list"}
    custom = {to_rbac[verb] for verb in re.findall(r"self\.api\.(\w+?)_namespaced_custom_object", source)}
    apps = {"get" for _ in re.findall(r"self\.apps_api\.read_namespaced_deployment", source)}
    return {("serving.kserve.io", "inferenceservices"): custom, ("apps", "deployments"): apps}


def test_pipeline_runner_may_do_what_the_deployer_does_and_nothing_more(kind_objects):
    cfg = load_config()
    roles = [o for o in kind_objects if o["kind"] in ("Role", "ClusterRole")]
    bindings = [o for o in kind_objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert [r["kind"] for r in roles] == ["Role"] and [b["kind"] for b in bindings] == ["RoleBinding"]
    role, binding = roles[0], bindings[0]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == cfg.deploy.kserve.namespace
    granted = {(rule["apiGroups"][0], rule["resources"][0]): set(rule["verbs"]) for rule in role["rules"]}
    assert all(len(rule["apiGroups"]) == len(rule["resources"]) == 1 for rule in role["rules"])
    # Exactly the verbs the code calls: no list/watch it never uses, and get on the Deployments it proves.
    assert granted == _verbs_the_deployer_uses()
    assert granted[("serving.kserve.io", "inferenceservices")] == {"get", "create", "patch", "update", "delete"}
    assert granted[("apps", "deployments")] == {"get"}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner",
                                    "namespace": KFP_NAMESPACE}]


def test_serving_runtime_is_hardened(kind_objects):
    spec = find(kind_objects, "ClusterServingRuntime", "tollgate")["spec"]
    container = spec["containers"][0]
    security = container["securityContext"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The server writes only under /tmp: an emptyDir of the runtime's own.
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume


def test_model_service_account_mounts_no_token(kind_objects):
    cfg = load_config().deploy.kserve
    assert find(kind_objects, "ServiceAccount", cfg.service_account)["automountServiceAccountToken"] is False


def test_minio_has_storage_and_a_bucket_job(kind_objects):
    deployment = find(kind_objects, "Deployment", "minio")
    volume = deployment["spec"]["template"]["spec"]["volumes"][0]
    find(kind_objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    job = find(kind_objects, "Job", "minio-buckets")
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "mc mb --ignore-existing tollgate/models tollgate/data tollgate/monitoring" in script
    assert load_config().kfp.registry_uri == "s3://models"
    for container in (deployment["spec"]["template"]["spec"]["containers"][0],
                      job["spec"]["template"]["spec"]["containers"][0]):
        assert ":" in container["image"] and not container["image"].endswith(":latest")


# -- images, versions, ports -----------------------------------------------------------------

def test_images_carry_the_project_version(kind_objects):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    runtime = find(kind_objects, "ClusterServingRuntime", "tollgate")
    assert runtime["spec"]["containers"][0]["image"] == f"tollgate-serving:{version}"
    assert load_config().pipeline.image == f"tollgate:{version}"
    makefile = (REPO / "Makefile").read_text()
    assert "COMPONENT_IMAGE := tollgate\n" in makefile and "SERVING_IMAGE   := tollgate-serving\n" in makefile


def test_kind_config_pins_the_node_and_maps_every_node_port(kind_objects):
    cluster = yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())
    (node,) = cluster["nodes"]
    match = re.fullmatch(r"kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"])
    assert match and int(match.group(1)) >= 32, "KServe v0.20.0 needs Kubernetes >= 1.32; pin by digest"
    assert int(match.group(1)) == int(KUBERNETES_VERSION.split(".")[1]), "validate for the node's Kubernetes"
    mapped = {m["containerPort"] for m in node["extraPortMappings"]}
    node_ports = {p["nodePort"] for o in kind_objects if o["kind"] == "Service" for p in o["spec"]["ports"]
                  if "nodePort" in p}
    assert node_ports == mapped
    assert all(m["hostPort"] == m["containerPort"] and m["listenAddress"] == "127.0.0.1"
               for m in node["extraPortMappings"])
    assert load_config().kfp.host == "http://localhost:30888"


def test_cluster_script_pins_third_party_versions():
    script = (MANIFESTS / "kind" / "cluster.sh").read_text()
    assert 'KFP_VERSION="2.17.0"' in script and 'KSERVE_VERSION="v0.20.0"' in script
    assert re.search(r'CERT_MANAGER_VERSION="v\d+\.\d+\.\d+"', script)
    assert "env/platform-agnostic?ref=${KFP_VERSION}" in script and "env/dev-kind" not in script
    assert "kserve.controller.deploymentMode=Standard" in script
    assert not re.search(r"\b(latest|master|main)\b", script.split("case ")[0].split("say()")[0])
    assert subprocess.run(["bash", "-n", str(MANIFESTS / "kind" / "cluster.sh")]).returncode == 0


def test_cluster_up_preloads_the_images_the_first_deploy_pulls():
    """The predictor pod's init container is KServe's storage-initializer (kserve v0.20.0
    charts/kserve-resources/values.yaml: kserve.storage.image kserve/storage-initializer, tag =
    the chart version). `cluster-up` pulls it once and loads it into the node, after the cluster
    exists and before the first deploy; `make kind-load` loads our own two images."""
    script = (MANIFESTS / "kind" / "cluster.sh").read_text()
    assert 'FIRST_DEPLOY_IMAGES=("kserve/storage-initializer:${KSERVE_VERSION}")' in script
    up = script[script.index("up() {"):script.index("endpoints() {")]
    load = up.index('kind load docker-image --name "${CLUSTER_NAME}" "${FIRST_DEPLOY_IMAGES[@]}"')
    assert up.index("kind create cluster") < up.index('docker pull "${image}"') < load
    assert load < up.index("Waiting until everything is ready")


def test_cluster_script_says_what_is_missing(tmp_path):
    """Without docker on PATH, `cluster-up` stops at once with the tool to install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    result = subprocess.run([shutil.which("bash"), str(MANIFESTS / "kind" / "cluster.sh"), "up"], capture_output=True,
                            text=True, env={"PATH": str(bin_dir)}, timeout=30)
    assert result.returncode == 1
    assert "'docker' is not installed" in result.stderr and "get-docker" in result.stderr


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed here")
def test_cluster_script_says_when_the_docker_daemon_is_down(tmp_path):
    """This machine (and CI) has the docker CLI but no daemon: the script must say so, not hang."""
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0:
        pytest.skip("a Docker daemon is running here, so the 'daemon down' message cannot be shown")
    result = subprocess.run(["bash", str(MANIFESTS / "kind" / "cluster.sh"), "up"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "daemon does not answer" in result.stderr


# -- the end-to-end checklist (make e2e-kind) -------------------------------------------------

E2E_SCRIPT = REPO / "scripts" / "e2e-kind.sh"
E2E_STEPS = ["cluster-up", "images", "kind-load", "submit #1", "answers #1", "submit #2", "answers #2",
             "broken version", "cluster-down"]


def test_e2e_script_reads_as_the_users_checklist():
    text = E2E_SCRIPT.read_text()
    assert subprocess.run(["bash", "-n", str(E2E_SCRIPT)]).returncode == 0
    header = [re.match(r"#\s+\d\s+(\S+(?: #\d| version)?)", line) for line in text.splitlines()]
    listed = [m.group(1) for m in header if m]
    assert listed == ["preflight"] + E2E_STEPS, listed
    run_order = re.findall(r'^\s+step "([^"]+)"', text, flags=re.MULTILINE)
    assert run_order == E2E_STEPS
    assert "submit --config" in text and "--deploy-target kserve --wait" in text
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^e2e-kind: ## .+\n\tscripts/e2e-kind\.sh$", makefile, flags=re.MULTILINE)
    assert "e2e-kind" in re.search(r"^\.PHONY: images.*$", makefile, flags=re.MULTILINE).group(0)
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "kind-e2e.yml").read_text())
    (job,) = workflow["jobs"].values()
    commands = [step.get("run", "") for step in job["steps"]]
    assert "make e2e-kind" in commands and "make venv" in commands
    assert job["env"]["KIND_VERSION"] == "v0.29.0"


def _without(tmp_path, *tools):
    """A PATH with the usual tools but none of ``tools``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "printf", "tail", "mkdir", "cat", "make", "env", "sed", "grep", "awk"):
        found = shutil.which(tool)
        if found and tool not in tools:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_e2e_fails_at_once_without_docker(tmp_path):
    log_dir = tmp_path / "logs"
    result = subprocess.run([shutil.which("bash"), str(E2E_SCRIPT)], capture_output=True, text=True, timeout=60,
                            env={"PATH": _without(tmp_path, "docker", "kind", "helm"), "E2E_LOG_DIR": str(log_dir)})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("FAIL  preflight") for line in lines)
    assert any("docker is not installed" in line for line in lines)
    assert any("kind is not installed" in line for line in lines)
    assert "nothing was started" in result.stderr
    assert not log_dir.exists(), "no step may run after a failed preflight"


@pytest.mark.skipif(shutil.which("docker") is None or shutil.which("make") is None,
                    reason="needs the docker CLI (without a daemon) and make")
def test_make_e2e_kind_fails_at_once_when_the_docker_daemon_is_down(tmp_path):
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0:
        pytest.skip("a Docker daemon is running here, so the 'daemon down' failure cannot be shown")
    result = subprocess.run(["make", "-s", "-C", str(REPO), "e2e-kind"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "E2E_LOG_DIR": str(tmp_path / "logs")})
    assert result.returncode != 0
    assert "FAIL  preflight" in result.stdout and "daemon does not answer" in result.stdout
    assert "PASS" not in result.stdout and not (tmp_path / "logs").exists()


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs root and setpriv to run the model server as an unprivileged user")
def test_model_server_needs_no_writable_filesystem_but_tmp(trained_model_dir):
    """The runtime sets readOnlyRootFilesystem with an emptyDir at /tmp: the server, run here as
    `nobody` with no writable home, no writable working directory and only a private TMPDIR,
    must load and answer v1 and v2, and its TMPDIR is all it may touch."""
    import tempfile

    from tests.conftest import free_port
    from tollgate.cluster.kserve import served_versions

    # pytest's own tmp directories are private to root: share a fresh one under the system temp dir.
    shared = Path(tempfile.mkdtemp(prefix="tollgate-readonly-"))
    model_dir = shared / "model"
    shutil.copytree(trained_model_dir, model_dir)
    writable = shared / "tmp"
    writable.mkdir()
    for path in (shared, model_dir, *model_dir.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    writable.chmod(0o1777)
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "TMPDIR": str(writable), "PYTHONDONTWRITEBYTECODE": "1",
           "MPLCONFIGDIR": str(writable / "matplotlib")}
    process = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "tollgate.serving",
         "--model-dir", str(model_dir), "--model-name", "credit-default", "--http-port", str(port), "--no-grpc",
         "--host", "127.0.0.1"], cwd="/", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited as an unprivileged user: {process.stderr.read().decode()[-1500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.3)
        schema = json.loads((model_dir / "input_schema.json").read_text())
        versions = served_versions(f"http://127.0.0.1:{port}", "credit-default", schema)
        assert set(versions) == {"v1", "v2"} and len(set(versions.values())) == 1
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(shared, ignore_errors=True)
