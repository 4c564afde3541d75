"""docker/Dockerfile, checked statically: there is no Docker daemon here or in CI.

dockerfile-parse reads the Dockerfile (continuations, comments, ARG substitution in FROM) and
docker-py's PatternMatcher applies the per-Dockerfile .dockerignore rules; a few lines here group
the instructions into stages. They back the checks: every base image is pinned, no `latest`,
both targets end as a numeric non-root user, the serving target starts the model server with
the flags the ClusterServingRuntime uses, and everything COPY needs is inside the build context.
"""

import io
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.conftest import project_files

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
TARGETS = ("component", "serving")


@dataclass
class Stage:
    name: str
    base: str  # image reference after ARG substitution, or a previous stage's name
    instructions: list = field(default_factory=list)  # (KEYWORD, arguments)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, in order.

    dockerfile-parse joins continuations and drops comments as BuildKit does, and gives each
    FROM's image with the global ARGs substituted (``parent_images``, in FROM order); the stages
    and their ``AS`` names are read from its instruction list.
    """
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    images = iter(parser.parent_images)
    for item in parser.structure:
        keyword, rest = item["instruction"].upper(), item["value"].strip()
        if keyword == "COMMENT":
            continue
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, next(images)))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"only ARG may come before the first FROM, got {keyword}")
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def problems(text: str, targets=TARGETS) -> list[str]:
    """What is wrong with a Dockerfile under Tollgate's rules (empty list = fine)."""
    found = []
    _, stages = parse(text)
    by_name = {stage.name: stage for stage in stages}
    if "latest" in text.lower():
        found.append("mentions 'latest'")
    for stage in stages:
        if stage.base in by_name:
            continue
        if "@sha256:" in stage.base:
            continue
        tag = stage.base.rpartition(":")[2] if ":" in stage.base.rpartition("/")[2] else ""
        if not tag or not re.match(r"^\d+\.\d+\.\d+", tag):
            found.append(f"stage {stage.name}: base image {stage.base!r} is not pinned to a digest or an exact version tag")
    for target in targets:
        if target not in by_name:
            found.append(f"no stage named {target!r}")
            continue
        user = effective(by_name, target, "USER")
        if user is None:
            found.append(f"target {target}: no USER, so it runs as root")
        elif not re.fullmatch(r"[1-9]\d*(:\d+)?", user):
            found.append(f"target {target}: USER {user!r} is not a numeric non-root uid (runAsNonRoot needs one)")
    return found


def effective(by_name: dict[str, Stage], target: str, keyword: str):
    """The last ``keyword`` value a target has, following FROM <stage> back through its parents."""
    stage = by_name[target]
    while True:
        values = [rest for key, rest in stage.instructions if key == keyword]
        if values:
            return values[-1]
        if stage.base not in by_name:
            return None
        stage = by_name[stage.base]


def dockerignore_matcher(patterns: list[str]):
    """Whether the build context leaves a path out: the last pattern matching the path or one of
    its parent directories wins (docker-py's PatternMatcher, the rule BuildKit applies)."""
    from docker.utils.build import PatternMatcher

    return PatternMatcher(patterns).matches


@pytest.fixture(scope="module")
def dockerfile():
    text = DOCKERFILE.read_text()
    global_args, stages = parse(text)
    return text, global_args, {stage.name: stage for stage in stages}


def test_dockerfile_parses_into_the_expected_stages(dockerfile):
    _, global_args, stages = dockerfile
    assert list(stages) == ["build", "runtime", "component", "serving"]
    assert stages["component"].base == stages["serving"].base == "runtime"
    assert global_args["PYTHON_IMAGE"].startswith("python:3.11.") and global_args["PYTHON_IMAGE"].endswith("-slim-bookworm")


def test_dockerfile_pins_its_base_and_runs_as_non_root(dockerfile):
    text, _, stages = dockerfile
    assert problems(text) == []
    assert effective(stages, "component", "USER") == effective(stages, "serving", "USER") == "10001:10001"


@pytest.mark.parametrize("mutation, complaint", [
    (lambda t: t.replace("python:3.11.14-slim-bookworm", "python:3.11-slim"), "not pinned"),
    (lambda t: t.replace("python:3.11.14-slim-bookworm", "python"), "not pinned"),
    (lambda t: t.replace("python:3.11.14-slim-bookworm", "python:latest"), "latest"),
    (lambda t: t.replace("USER 10001:10001", "USER root"), "not a numeric non-root"),
    (lambda t: t.replace("USER 10001:10001", "USER 0"), "not a numeric non-root"),
    (lambda t: t.replace("USER 10001:10001\n", ""), "runs as root"),
])
def test_the_checks_catch_what_they_are_for(mutation, complaint):
    assert any(complaint in problem for problem in problems(mutation(DOCKERFILE.read_text())))


def test_component_target_prepares_no_kfp_artifact_roots(dockerfile):
    """KFP 2.17 mounts emptyDirs at /gcs, /minio, /s3, /.local, /.cache, /.config into every task pod
    (kubeflow/pipelines#10857; at tag 2.17.0 backend/src/v2/compiler/argocompiler/container.go, the
    *ScratchLocation constants and their EmptyDir volumes in workflowCompiler): a chown of them in
    the image is stale."""
    text, _, stages = dockerfile
    runs = " ".join(rest for key, rest in stages["component"].instructions if key == "RUN")
    assert not re.search(r"chown|mkdir", runs)
    assert "#10857" in text and "#10397" not in text


def _pins(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if "==" in line and not line.startswith("#")]
    return {name.lower().replace("_", "-"): version for name, version in (line.split("==", 1) for line in lines)}


TEST_ONLY = ("pytest", "moto", "cfn-lint", "docker", "kubernetes-validate", "jsonschema", "responses", "flask")


def test_images_install_the_runtime_lock_only(dockerfile):
    """Defect 7: both images installed pytest, moto, cfn-lint, docker... from one lock."""
    text, _, stages = dockerfile
    runtime, test = _pins(REPO / "requirements.lock"), _pins(REPO / "requirements-test.lock")
    assert not set(runtime) & set(test), "a package is pinned in both locks"
    assert not set(TEST_ONLY) & set(runtime), "test-only packages in the runtime lock"
    assert set(TEST_ONLY) <= set(test)
    assert not any("requirements-test.lock" in rest for stage in stages.values() for _, rest in stage.instructions)
    copies = [rest for stage in stages.values() for key, rest in stage.instructions if key == "COPY"]
    assert any(rest.startswith("requirements.lock ") for rest in copies)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["optional-dependencies"]["test"]:
        name, version = requirement.split("==")
        assert test.get(name.split("[")[0].lower()) == version, f"{name} of the test extra is not in requirements-test.lock"
    makefile = (REPO / "Makefile").read_text()
    assert "-r requirements.lock -r requirements-test.lock" in makefile


def test_images_install_the_locked_dependencies_with_kfp(dockerfile):
    _, _, stages = dockerfile
    runs = " ".join(rest for key, rest in stages["build"].instructions if key == "RUN")
    assert "install --no-deps -r /tmp/requirements.lock" in runs
    lock = (REPO / "requirements.lock").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lock if "==" in line and not line.startswith("#"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name, version = requirement.split("==")
        assert pins.get(name) == version, f"{name} in pyproject ({version}) differs from requirements.lock"
    assert pins["kfp"] == "2.17.0"
    import setuptools

    assert f"SETUPTOOLS_VERSION={setuptools.__version__}" in DOCKERFILE.read_text()


def test_serving_target_starts_the_model_server(dockerfile):
    from tollgate.serving.__main__ import build_parser

    _, _, stages = dockerfile
    serving = dict(stages["serving"].instructions)
    assert json.loads(serving["ENTRYPOINT"]) == ["python", "-m", "tollgate.serving"]
    assert set(serving["EXPOSE"].split()) == {"8080", "8081"}
    options = build_parser().parse_args(json.loads(serving["CMD"]))
    assert (options.model_dir, options.http_port, options.grpc_port) == ("/mnt/models", 8080, 8081)


def test_everything_copied_is_in_the_build_context(dockerfile):
    _, _, stages = dockerfile
    patterns = [line.strip() for line in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = []
    for stage in stages.values():
        for key, rest in stage.instructions:
            if key == "COPY" and not rest.startswith("--from"):
                sources += shlex.split(rest)[:-1]
    assert sources, "no COPY found"
    # Every project file under each source (as a fresh clone has them), templates and default config
    # included (the image needs them at run time), not only the Python modules.
    files = [name for name in project_files()
             if any(name == source or name.startswith(f"{source}/") for source in sources)]
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert any(name == source or name.startswith(f"{source}/") for name in files), f"COPY {source}: no file"
    assert {"tollgate/templates/report/page.html.j2", "tollgate/defaults/tollgate.yaml", "serving/model.py"} <= set(files)
    excludes = dockerignore_matcher(patterns)
    excluded = [name for name in files if excludes(name)]
    assert excluded == [], f"excluded from the build context: {excluded}"
    assert excludes(".venv/bin/python")
    assert excludes("tollgate/__pycache__/config.cpython-311.pyc")
    assert excludes("tests/test_docker.py")
    # The matcher itself: a template excluded by a later pattern would be caught.
    assert dockerignore_matcher([*patterns, "**/*.j2"])("tollgate/templates/report/page.html.j2")


def test_images_record_the_commit_they_were_built_from(dockerfile):
    """register reads TOLLGATE_GIT_SHA for each version's code_version; the image must set it."""
    _, _, stages = dockerfile
    runtime = stages["runtime"].instructions
    assert ("ARG", "GIT_SHA=unknown") in runtime
    env = " ".join(rest for key, rest in runtime if key == "ENV")
    assert "TOLLGATE_GIT_SHA=${GIT_SHA}" in env
    makefile = (DOCKERFILE.parent.parent / "Makefile").read_text()
    builds = [line for line in makefile.splitlines() if "docker build" in line]
    assert len(builds) == 2 and all("--build-arg GIT_SHA=$(GIT_SHA)" in line for line in builds)
