#!/usr/bin/env bash
# `make e2e-kind`: the cluster path end to end, top to bottom as a user walks it (README, "Run on kind").
# Needs a machine with a running Docker daemon, kind >= v0.29.0, kubectl, helm and the project's .venv
# (`make venv`). It creates the kind cluster `tollgate` and deletes it at the end (set
# E2E_KEEP_CLUSTER=1 to keep it for a look after a failure). Each step prints one line,
# PASS or FAIL; the first failure skips the rest and the script exits 1.
#
#   0  preflight          docker (CLI and daemon), kind, kubectl, helm, .venv: fails at once if one is missing
#   1  cluster-up         kind + cert-manager + KFP 2.17.0 + KServe v0.20.0 (Standard) + MinIO + our manifests
#   2  images             make images (component and serving targets)
#   3  kind-load          both images into the node
#   4  submit #1          tollgate submit --deploy-target kserve --wait: train, gate, register, create the ISVC
#   5  answers #1         REST v1, REST v2 and gRPC through the NodePorts answer with the production version
#   6  submit #2          a second run patches the InferenceService
#   7  answers #2         the served model_version moved to the new production version, on every protocol
#   8  broken version     a version whose model cannot load is rolled back: served version and aliases unchanged
#   9  cluster-down       delete the kind cluster
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${REPO}/.venv/bin/python"
TOLLGATE="${REPO}/.venv/bin/tollgate"
CHECK="${REPO}/scripts/e2e_kind.py"
LOG_DIR="${E2E_LOG_DIR:-${REPO}/build/e2e-kind}"
FAILED=""

pass() { printf 'PASS  %-16s %s\n' "$1" "${2:-}"; }
fail() { printf 'FAIL  %-16s %s\n' "$1" "${2:-}"; }

# Step NAME COMMAND...: run it with its output in $LOG_DIR/NAME.log; one PASS/FAIL line.
step() {
  local name="$1"; shift
  if [ -n "${FAILED}" ]; then
    printf 'SKIP  %-16s (after the failure of %s)\n' "${name}" "${FAILED}"
    return 1
  fi
  local log="${LOG_DIR}/${name// /-}.log"
  if "$@" >"${log}" 2>&1; then
    pass "${name}" "$(tail -n 1 "${log}")"
  else
    fail "${name}" "see ${log}: $(tail -n 1 "${log}")"
    FAILED="${name}"
    return 1
  fi
}

preflight() {
  local missing=()
  command -v docker >/dev/null 2>&1 || missing+=("docker is not installed (https://docs.docker.com/get-docker/)")
  if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    missing+=("docker is installed but its daemon does not answer ('docker info' failed); start Docker")
  fi
  command -v kind >/dev/null 2>&1 || missing+=("kind is not installed (>= v0.29.0, https://kind.sigs.k8s.io/)")
  command -v kubectl >/dev/null 2>&1 || missing+=("kubectl is not installed (>= v1.32)")
  command -v helm >/dev/null 2>&1 || missing+=("helm is not installed (>= v3.8)")
  [ -x "${TOLLGATE}" ] || missing+=("${TOLLGATE} is missing; run 'make venv' first")
  if [ "${#missing[@]}" -gt 0 ]; then
    local reason
    for reason in "${missing[@]}"; do fail "preflight" "${reason}"; done
    echo "e2e-kind needs a machine with a running Docker daemon; nothing was started." >&2
    exit 1
  fi
  pass "preflight" "docker daemon, kind, kubectl, helm and .venv present"
}

# A config for the e2e runs: the defaults, with waits sized for a fresh kind node.
write_config() {
  cat >"${LOG_DIR}/tollgate-e2e.yaml" <<'EOF'
deploy:
  target: kserve
  kserve:
    first_ready_timeout_seconds: 900
    ready_timeout_seconds: 300
EOF
}

submit() { "${TOLLGATE}" submit --config "${LOG_DIR}/tollgate-e2e.yaml" --deploy-target kserve --wait --timeout 3600; }

answers_now() {
  local version
  version="$("${PYTHON}" "${CHECK}" production)" || return 1
  echo "${version}" >"${LOG_DIR}/production-$1"
  "${PYTHON}" "${CHECK}" answers --expect "${version}"
}

answers_moved() {
  answers_now 2 || return 1
  local before after
  before="$(cat "${LOG_DIR}/production-1")"
  after="$(cat "${LOG_DIR}/production-2")"
  if [ "${after}" -le "${before}" ]; then
    echo "production is still v${before} after the second submit (now v${after})"
    return 1
  fi
  echo "served model_version moved from v${before} to v${after} on REST v1, REST v2 and gRPC"
}

cluster_down() {
  if [ "${E2E_KEEP_CLUSTER:-0}" = "1" ]; then
    echo "E2E_KEEP_CLUSTER=1: the cluster stays; delete it with 'make cluster-down'"
    return 0
  fi
  make -C "${REPO}" cluster-down
}

main() {
  preflight
  mkdir -p "${LOG_DIR}"
  write_config
  step "cluster-up" make -C "${REPO}" cluster-up
  step "images" make -C "${REPO}" images
  step "kind-load" make -C "${REPO}" kind-load
  step "submit #1" submit
  step "answers #1" answers_now 1
  step "submit #2" submit
  step "answers #2" answers_moved
  step "broken version" "${PYTHON}" "${CHECK}" broken-deploy --timeout 240
  # Always tidy up, even after a failure (unless asked not to).
  local failed="${FAILED}"
  FAILED=""
  step "cluster-down" cluster_down
  if [ -n "${failed}" ]; then
    echo "e2e-kind FAILED at: ${failed} (logs in ${LOG_DIR})" >&2
    exit 1
  fi
  [ -z "${FAILED}" ] || exit 1
  echo "e2e-kind passed (logs in ${LOG_DIR})"
}

main "$@"
