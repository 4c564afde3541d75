"""The compiled KFP IR: what a cluster would run (no cluster runs in CI, so the YAML is the check).

Every task runs in the component image without installing kfp, the gate guards register and
deploy, scheduled packages read KFP's scheduled time, tasks that touch S3 get the MinIO
credentials from the Secret the kind overlay creates, and deploy is never served from cache.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tollgate.cli import app
from tollgate.config import load_config
from tollgate.pipelines.training import S3_SECRET_KEYS, TASK_ENVIRONMENT, compile_pipeline

S3_TASKS = {"ingest", "validate", "evaluate", "register", "deploy"}


def compiled(tmp_path, use_schedule_time=False, **overrides):
    config = load_config(None, overrides)
    documents = list(yaml.safe_load_all(compile_pipeline(config, tmp_path / "pipeline.yaml", use_schedule_time)
                                        .read_text()))
    return config, documents[0], (documents[1] if len(documents) > 1 else {})


def all_tasks(spec):
    """Every task of the DAG, nested ones included: name -> task."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.fixture(scope="module")
def cluster_package(tmp_path_factory):
    """The package `tollgate schedule` sends: S3 registry, kserve target, scheduled time wired in."""
    return compiled(tmp_path_factory.mktemp("ir"), use_schedule_time=True,
                    **{"registry.uri": "s3://models", "deploy.target": "kserve"})


def test_every_task_runs_in_the_component_image_without_installing_kfp(cluster_package):
    config, spec, _ = cluster_package
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) >= 10
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == config.pipeline.image, name
        assert "pip install" not in " ".join(container["command"]), f"{name} installs packages at run time"


@pytest.mark.parametrize("when", ["always", "drift"])
def test_every_task_process_gets_the_allocator_settings(tmp_path, when):
    # Set on the task, so kfp.local's subprocesses and the cluster's containers both get them;
    # with retrain.when: drift the retrain-check task is one more.
    _, spec, _ = compiled(tmp_path, **{"retrain.when": when})
    executors = spec["deploymentSpec"]["executors"]
    assert ("exec-retrain-check" in executors) == (when == "drift")
    for name, executor in executors.items():
        env = {item["name"]: item["value"] for item in executor["container"].get("env", [])}
        assert env.get("GLIBC_TUNABLES") == TASK_ENVIRONMENT["GLIBC_TUNABLES"], name
        assert env.get("ARROW_DEFAULT_MEMORY_POOL") == "system", name
        assert env.get("NUMPY_MADVISE_HUGEPAGE") == "0", name
        if name == "exec-train":  # the per-task thread limits are kept beside it
            assert env["OMP_NUM_THREADS"] == "1"


_HUGE_PAGE_FLAGS = """
import numpy as np
array = np.ones(8 * 1024 * 1024)  # 64 MiB: numpy advises huge pages for arrays of 4 MiB or more
inside = array.ctypes.data + 32 * 1024 * 1024
flags, current = None, False
with open("/proc/self/smaps") as smaps:
    for line in smaps:
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            low, high = (int(part, 16) for part in head.split("-"))
            current = low <= inside < high
        elif line.startswith("VmFlags:") and current:
            flags = line.split()[1:]
print("unreported" if flags is None else "hg" in flags)
"""


# Without transparent huge pages in the kernel (or off Linux) numpy's advice does nothing, so there
# is nothing for the setting to turn off; any Linux CI runner's kernel has them.
@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage").is_dir(),
                    reason="this kernel has no transparent huge pages (/sys/kernel/mm/transparent_hugepage): "
                           "numpy's huge-page advice is a no-op here")
def test_task_environment_stops_numpy_advising_huge_pages():
    # What NUMPY_MADVISE_HUGEPAGE=0 is in TASK_ENVIRONMENT for (see pipelines/training.py): the kernel's
    # "hg" flag (MADV_HUGEPAGE) on a large array's memory, in a fresh process as a task is.
    def advised(environment):
        finished = subprocess.run([sys.executable, "-c", _HUGE_PAGE_FLAGS], env=environment,
                                  capture_output=True, text=True, check=True)
        answer = finished.stdout.strip()
        if answer == "unreported":  # e.g. a sandboxed kernel (gVisor) whose smaps has no VmFlags
            pytest.skip("this kernel's /proc/self/smaps does not report VmFlags, so the advice cannot be seen")
        return answer == "True"

    plain = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    assert advised(plain), "numpy no longer advises huge pages by default: the setting may be dropped"
    assert not advised({**plain, **TASK_ENVIRONMENT})


def test_compile_cli_sets_the_image_of_every_task(tmp_path):
    output = tmp_path / "ir.yaml"
    result = CliRunner().invoke(app, ["compile", "-o", str(output), "--image", "registry.local/tollgate:9.9.9-abc1234"])
    assert result.exit_code == 0, result.output
    executors = next(yaml.safe_load_all(output.read_text()))["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.local/tollgate:9.9.9-abc1234"}


def test_the_gate_guards_register_and_deploy(cluster_package):
    _, spec, _ = cluster_package
    root = spec["root"]["dag"]["tasks"]
    (condition,) = [task for task in root.values() if "triggerPolicy" in task]
    assert condition["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--gate-Output'] == true"
    assert condition["inputs"]["parameters"]["pipelinechannel--gate-Output"]["taskOutputParameter"]["producerTask"] == "gate"
    guarded = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert {"infra-validate", "register", "deploy"} <= set(guarded)
    assert not {"register", "deploy"} & set(root), "register/deploy must only run inside the gate"


def test_deploy_and_champion_dependent_tasks_skip_the_cache(cluster_package):
    _, spec, _ = cluster_package
    tasks = all_tasks(spec)
    for name in ("deploy", "register", "infra-validate", "evaluate", "gate"):
        assert not tasks[name].get("cachingOptions", {}).get("enableCache"), name


def test_scheduled_package_passes_the_schedule_time_to_ingest(cluster_package, tmp_path):
    _, spec, _ = cluster_package
    scheduled = spec["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]["scheduled_time"]
    assert scheduled == {"runtimeValue": {"constant": "{{$.pipeline_job_schedule_time_utc}}"}}
    _, one_off, _ = compiled(tmp_path)
    assert one_off["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]["scheduled_time"] == {
        "componentInputParameter": "scheduled_time"}


def test_tasks_that_touch_s3_get_the_minio_secret(cluster_package):
    config, _, platform = cluster_package
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == S3_TASKS
    for name, settings in executors.items():
        (secret,) = settings["secretAsEnv"]
        assert secret["secretName"] == config.kfp.s3_secret, name
        assert {(m["secretKey"], m["envVar"]) for m in secret["keyToEnv"]} == {(k, k) for k in S3_SECRET_KEYS}


def test_every_cluster_package_carries_the_s3_secret(tmp_path):
    """Defect: a package compiled with local defaults and run with registry_uri=s3://... had no credentials."""
    config, spec, platform = compiled(tmp_path)
    assert not config.registry.uri.startswith("s3://") and "registry_uri" in spec["root"]["inputDefinitions"]["parameters"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == S3_TASKS
    for settings in executors.values():
        (secret,) = settings["secretAsEnv"]
        assert secret["secretName"] == config.kfp.s3_secret and not secret.get("optional")


def test_local_runs_build_without_kubernetes_settings_for_a_local_config(tmp_path):
    from tollgate.pipelines.training import s3_env_from_secret

    marker = object()
    assert s3_env_from_secret(load_config())(marker) is marker


def test_s3_data_alone_also_wires_the_secret(tmp_path):
    _, _, platform = compiled(tmp_path, **{"data.source": "s3://data/applicants.parquet"})
    assert "exec-ingest" in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_submit_compiles_for_the_cluster_registry(tmp_path):
    """`tollgate submit` defaults the registry to kfp.registry_uri, so its package carries the S3 Secret."""
    from tollgate.cli.cluster import _cluster_config

    config, arguments = _cluster_config(None, None, None, None, "kserve", None, None)
    assert arguments == {"data_source": "builtin", "registry_uri": "s3://models", "model_name": "credit-default"}
    assert config.deploy.target == "kserve"
    documents = list(yaml.safe_load_all(compile_pipeline(config, tmp_path / "p.yaml").read_text()))
    assert "exec-deploy" in documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_compiled_ir_loads_back_into_kfp_and_recompiles(tmp_path):
    from kfp import compiler, components

    path = compile_pipeline(load_config(), tmp_path / "pipeline.yaml")
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "tollgate-training"
    assert set(loaded.component_spec.inputs) == {"data_source", "registry_uri", "model_name", "scheduled_time"}
    assert loaded.component_spec.inputs["data_source"].default == "builtin"
    again = tmp_path / "again.yaml"
    compiler.Compiler().compile(loaded, str(again))
    original = next(yaml.safe_load_all(path.read_text()))
    recompiled = next(yaml.safe_load_all(again.read_text()))
    assert recompiled["root"]["dag"]["tasks"].keys() == original["root"]["dag"]["tasks"].keys()


@pytest.mark.parametrize("task, label", [
    ("binary", "Select best by validation roc_auc"),
    ("multiclass", "Select best by validation roc_auc_ovr_macro"),
    ("auto", "Select best by validation roc_auc (multiclass: roc_auc_ovr_macro)"),
])
def test_every_task_has_a_display_name_and_select_names_the_metric_it_ranks_by(tmp_path, task, label):
    _, spec, _ = compiled(tmp_path, **{"data.task": task})
    tasks = all_tasks(spec)
    assert tasks["select"]["taskInfo"]["name"] == label
    # KFP falls back to the task's own name when no display name was set.
    unnamed = [name for name, body in tasks.items() if "componentRef" in body and body["taskInfo"]["name"] == name]
    assert unnamed == []


# The train ParallelFor's items exactly as Tollgate has always compiled them (keys, their order, the
# parameters' JSON text): they are the train tasks' cache keys and part of every submitted package.
GRID = [{"name": "logreg", "family": "logistic_regression", "params": {"max_iter": 1000}, "grid": {"C": [0.1, 1.0]}},
        {"name": "hgb", "family": "hist_gradient_boosting", "params": {"max_iter": 200, "early_stopping": True},
         "grid": {"learning_rate": [0.05], "max_leaf_nodes": [15]}}]
COMPILED_LOOP_ITEMS = (
    '[{"candidate_id": "logreg[C=0.1]", "family": "logistic_regression", '
    '"params_json": "{\\"max_iter\\": 1000, \\"C\\": 0.1, \\"random_state\\": 42}"}, '
    '{"candidate_id": "logreg[C=1]", "family": "logistic_regression", '
    '"params_json": "{\\"max_iter\\": 1000, \\"C\\": 1.0, \\"random_state\\": 42}"}, '
    '{"candidate_id": "hgb[learning_rate=0.05-max_leaf_nodes=15]", "family": "hist_gradient_boosting", '
    '"params_json": "{\\"max_iter\\": 200, \\"early_stopping\\": true, \\"learning_rate\\": 0.05, '
    '\\"max_leaf_nodes\\": 15, \\"random_state\\": 42}"}]'
)


def test_the_candidate_grid_compiles_to_the_same_loop_items(tmp_path):
    # Grid points are typed inside Tollgate; what reaches KFP must not move by a byte, or every
    # candidate of every scheduled run would miss the cache and retrain.
    _, spec, _ = compiled(tmp_path, **{"train.candidates": GRID, "split.seed": 42})
    (loop,) = [task for task in all_tasks(spec).values() if "parameterIterator" in task]
    assert loop["parameterIterator"]["items"]["raw"] == COMPILED_LOOP_ITEMS
