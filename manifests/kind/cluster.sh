#!/usr/bin/env bash
# Tollgate's kind cluster: `cluster.sh up|down|load IMAGE...` (called by make cluster-up,
# cluster-down and kind-load). Every step is idempotent: `up` on a running cluster re-applies
# the same pinned versions and waits again.
set -euo pipefail

CLUSTER_NAME="${KIND_CLUSTER_NAME:-tollgate}"
CONTEXT="kind-${CLUSTER_NAME}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFESTS="$(dirname "${HERE}")"

# Third-party versions, pinned. Only these lines change on an upgrade.
CERT_MANAGER_VERSION="v1.17.2"
KFP_VERSION="2.17.0"
KSERVE_VERSION="v0.20.0"
CERT_MANAGER_MANIFEST="https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
KFP_CLUSTER_SCOPED="github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=${KFP_VERSION}"
KFP_PLATFORM_AGNOSTIC="github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=${KFP_VERSION}"
KSERVE_CRD_CHART="oci://ghcr.io/kserve/charts/kserve-crd"
KSERVE_CHART="oci://ghcr.io/kserve/charts/kserve-resources"
# Images the first InferenceService's pod needs besides ours (make kind-load loads ours): KServe's
# storage-initializer (charts/kserve-resources values.yaml kserve.storage.image, tag = the chart's
# version). Pulled once on the host and loaded into the node, so the first deploy waits for no pull.
FIRST_DEPLOY_IMAGES=("kserve/storage-initializer:${KSERVE_VERSION}")

say() { printf '\n==> %s\n' "$*"; }

require() {
  local tool="$1" hint="$2"
  if ! command -v "${tool}" >/dev/null 2>&1; then
    echo "error: '${tool}' is not installed; ${hint}" >&2
    exit 1
  fi
}

require_docker() {
  require docker "install Docker (https://docs.docker.com/get-docker/); kind runs its nodes as containers"
  if ! docker info >/dev/null 2>&1; then
    echo "error: docker is installed but its daemon does not answer ('docker info' failed); start Docker" >&2
    exit 1
  fi
}

# Webhooks (cert-manager's, KServe's) can refuse requests for a short while after their
# Deployments report Available; retry such steps instead of failing the whole bring-up.
retry() {
  local attempts="$1"; shift
  local n
  for n in $(seq 1 "${attempts}"); do
    if "$@"; then return 0; fi
    [ "${n}" -lt "${attempts}" ] && { echo "    (attempt ${n} of ${attempts} failed; retrying in 15 s)"; sleep 15; }
  done
  echo "error: failed after ${attempts} attempts: $*" >&2
  return 1
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"; }

k() { kubectl --context "${CONTEXT}" "$@"; }

up() {
  require_docker
  require kind "install kind >= v0.29.0 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
  require kubectl "install kubectl >= v1.32 (https://kubernetes.io/docs/tasks/tools/)"
  require helm "install helm >= v3.8, used for KServe's OCI charts (https://helm.sh/docs/intro/install/)"
  require git "install git; kubectl fetches KFP's remote kustomize bases with it"

  if cluster_exists; then
    say "kind cluster '${CLUSTER_NAME}' already exists; re-applying everything"
  else
    say "Creating kind cluster '${CLUSTER_NAME}' (${HERE}/cluster.yaml)"
    kind create cluster --name "${CLUSTER_NAME}" --config "${HERE}/cluster.yaml" --wait 120s
  fi

  say "cert-manager ${CERT_MANAGER_VERSION} (KServe Standard mode needs it for its webhooks)"
  k apply -f "${CERT_MANAGER_MANIFEST}"
  k -n cert-manager wait --for=condition=Available deployment --all --timeout=300s

  say "Kubeflow Pipelines ${KFP_VERSION} (standalone, platform-agnostic)"
  k apply -k "${KFP_CLUSTER_SCOPED}"
  k wait --for=condition=established --timeout=120s crd/applications.app.k8s.io
  retry 3 k apply -k "${KFP_PLATFORM_AGNOSTIC}"

  say "KServe ${KSERVE_VERSION} in Standard mode"
  retry 3 helm --kube-context "${CONTEXT}" upgrade --install kserve-crd "${KSERVE_CRD_CHART}" \
    --version "${KSERVE_VERSION}" --namespace kserve --create-namespace --wait
  retry 3 helm --kube-context "${CONTEXT}" upgrade --install kserve "${KSERVE_CHART}" \
    --version "${KSERVE_VERSION}" --namespace kserve \
    --set kserve.controller.deploymentMode=Standard --wait --timeout 10m

  say "Images the first deploy needs, pulled once and loaded into the node: ${FIRST_DEPLOY_IMAGES[*]}"
  for image in "${FIRST_DEPLOY_IMAGES[@]}"; do
    docker image inspect "${image}" >/dev/null 2>&1 || retry 3 docker pull "${image}"
  done
  kind load docker-image --name "${CLUSTER_NAME}" "${FIRST_DEPLOY_IMAGES[@]}"

  say "Tollgate's resources (MinIO, serving runtime, RBAC, node ports): ${MANIFESTS}/overlays/kind"
  retry 3 k apply -k "${MANIFESTS}/overlays/kind"

  say "Waiting until everything is ready (KFP pulls many images on the first run: up to 20 min)"
  k -n minio wait --for=condition=Available deployment/minio --timeout=300s
  k -n minio wait --for=condition=complete job/minio-buckets --timeout=300s
  k -n kserve wait --for=condition=Available deployment --all --timeout=600s
  k -n kubeflow wait --for=condition=Available deployment --all --timeout=1200s

  endpoints
}

endpoints() {
  cat <<EOF

Tollgate's kind cluster '${CLUSTER_NAME}' is ready (kubectl context ${CONTEXT}).
  KFP UI          http://localhost:30080
  KFP API         http://localhost:30888      tollgate submit --host http://localhost:30888
  MinIO S3 API    http://localhost:30900      buckets: models, data, monitoring (dev credentials: manifests/overlays/kind/dev-credentials.env)
  MinIO console   http://localhost:30901
  Model HTTP      http://localhost:30880      /v1/models/credit-default:predict, /v2/models/credit-default/infer
  Model gRPC      localhost:30881             inference.GRPCInferenceService (OIP v2)
Next: make images && make kind-load, then tollgate submit --deploy-target kserve --wait
EOF
}

down() {
  require kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
  if cluster_exists; then
    kind delete cluster --name "${CLUSTER_NAME}"
    echo "Deleted kind cluster '${CLUSTER_NAME}'."
  else
    echo "No kind cluster named '${CLUSTER_NAME}'; nothing to delete."
  fi
}

load() {
  require_docker
  require kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
  if ! cluster_exists; then
    echo "error: no kind cluster '${CLUSTER_NAME}'; run 'make cluster-up' first" >&2
    exit 1
  fi
  for image in "$@"; do
    if ! docker image inspect "${image}" >/dev/null 2>&1; then
      echo "error: image ${image} is not built; run 'make images' first" >&2
      exit 1
    fi
  done
  kind load docker-image --name "${CLUSTER_NAME}" "$@"
  echo "Loaded into '${CLUSTER_NAME}': $*"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  load) shift; load "$@" ;;
  endpoints) endpoints ;;
  *) echo "usage: $0 up|down|load IMAGE...|endpoints" >&2; exit 2 ;;
esac
