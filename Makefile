# Two commands for a newcomer: `make run` and `make test`. Each builds .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tollgate-installed

.PHONY: run test lint serve compile bench bench-pipeline bench-profile bench-serving bench-fuzz bench-soak clean venv help

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements.lock requirements-test.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Tollgate needs Python 3.11; set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies

run: $(STAMP) ## run the whole gated DAG locally on built-in data
	$(BIN)/tollgate run $(ARGS)

# pytest-xdist: one worker per core, each taking whole test files (--dist loadfile), so a file's
# module fixtures (a pipeline run shared by its tests) run once, in one process, in file order.
# TEST_WORKERS=0 runs everything in this process, one test after another.
TEST_WORKERS ?= auto

test: $(STAMP) ## run the test suite (in parallel: TEST_WORKERS=auto, one per core; 0 = serial)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

lint: $(STAMP) ## ruff (style, imports, bugbear, pyupgrade) and mypy (with the pydantic plugin); settings in pyproject.toml
	$(BIN)/ruff check tollgate components pipelines serving tests bench scripts
	$(BIN)/mypy

serve: $(STAMP) ## serve the production model on localhost (HTTP 8080, gRPC 8081)
	$(BIN)/tollgate serve $(ARGS)

compile: $(STAMP) ## compile the pipeline to build/tollgate-pipeline.yaml
	$(BIN)/tollgate compile $(ARGS)

bench-pipeline: $(STAMP) ## benchmark the local DAG against a plain script
	$(BIN)/python bench/pipeline.py $(ARGS)

bench-profile: $(STAMP) ## where each task of `make run` spends its time (imports, reads, work), twice
	$(BIN)/python bench/task_profile.py $(ARGS)

bench-serving: $(STAMP) ## benchmark the model server against in-process predict and MLServer
	$(BIN)/python bench/serving.py $(ARGS)

bench-fuzz: $(STAMP) ## full-count fuzz of the model server (REST, gRPC, schemathesis): 0 5xx expected
	$(BIN)/python bench/fuzz.py $(ARGS)

bench-soak: $(STAMP) ## bounded soak of the model server: errors 0, RSS flat
	$(BIN)/python bench/soak.py $(ARGS)

clean: ## remove local runs, the local registry and build outputs (keeps .venv)
	rm -rf .tollgate build

# ---- the cluster path (needs Docker, kind, kubectl, helm; see README "Run on kind") ----
VERSION         := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
GIT_SHA         := $(shell git rev-parse --short HEAD 2>/dev/null || echo nogit)
COMPONENT_IMAGE := tollgate
SERVING_IMAGE   := tollgate-serving
IMAGES          := $(COMPONENT_IMAGE):$(VERSION) $(COMPONENT_IMAGE):$(VERSION)-$(GIT_SHA) \
                   $(SERVING_IMAGE):$(VERSION) $(SERVING_IMAGE):$(VERSION)-$(GIT_SHA)

.PHONY: images kind-load cluster-up cluster-down e2e-kind

images: ## build the component and serving images, tagged <version> and <version>-<git sha>
	@command -v docker >/dev/null 2>&1 || { echo "error: 'docker' is not installed; make images needs Docker (https://docs.docker.com/get-docker/)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "error: docker is installed but its daemon does not answer; start Docker" >&2; exit 1; }
	docker build -f docker/Dockerfile --build-arg GIT_SHA=$(GIT_SHA) --target component -t $(COMPONENT_IMAGE):$(VERSION) -t $(COMPONENT_IMAGE):$(VERSION)-$(GIT_SHA) .
	docker build -f docker/Dockerfile --build-arg GIT_SHA=$(GIT_SHA) --target serving -t $(SERVING_IMAGE):$(VERSION) -t $(SERVING_IMAGE):$(VERSION)-$(GIT_SHA) .

kind-load: ## load both images into the kind cluster
	manifests/kind/cluster.sh load $(IMAGES)

cluster-up: ## create the kind cluster with MinIO, KFP 2.17 and KServe 0.20, wait, print endpoints
	manifests/kind/cluster.sh up

cluster-down: ## delete the kind cluster
	manifests/kind/cluster.sh down

e2e-kind: ## end to end on kind: cluster-up, images, submit, v1/v2/gRPC answers, update, rollback, cluster-down
	scripts/e2e-kind.sh
