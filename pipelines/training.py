"""The Tollgate training DAG.

    [retrain_check -> dsl.If(train):]   (only with retrain.when drift | new_data)
    ingest -> validate -> preprocess -> train (ParallelFor) -> select -> evaluate -> gate
        -> dsl.If(passed): infra-validate -> register -> deploy
        -> report (always, after the gate: the HTML report of the run)

Settings that describe *the pipeline* (candidate grid, gate policy, image) are baked in
at compile time from the config; values that change *per run* (data source, registry,
model name, scheduled time) are pipeline parameters.
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's real types.

from pathlib import Path

from kfp import compiler, dsl

from tollgate.components import build_components
from tollgate.config import TollgateConfig
from tollgate.s3 import is_s3_uri
from tollgate.settings import (
    DeploySettings,
    EvaluateSettings,
    InfraValidateSettings,
    IngestSettings,
    PreprocessSettings,
    RetrainSettings,
    ValidateSettings,
)
from tollgate.steps.candidates import config_grid, loop_items
from tollgate.steps.gate import GatePolicy

# Keys of the kfp.s3_secret Secret; each becomes the env var of the same name (see tollgate/s3.py).
S3_SECRET_KEYS = ("S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

# The environment of every task process. A task is a fresh process that builds and drops tables
# of up to a few hundred MiB for seconds to minutes. With glibc's defaults every allocation over
# 128 KiB-32 MiB is an mmap of its own, handed back to the kernel on free, so the next one faults
# in fresh zeroed pages (system time): preprocess at 1,000,000 rows took 4.6 s in a fresh process,
# 3.3 s with these two tunables (allocations up to 256 MiB come from the heap, and up to 1 GiB of
# freed memory is kept for reuse until the process exits). docs/benchmarks.md has the whole run.
# They govern glibc's malloc on the main thread (glibc caps the pools of other threads at 64 MiB
# regardless).
# The price: a task's RSS may stay up to 1 GiB above its live data until it exits (the DAG's
# peak at 1,000,000 rows: 2.2 -> 2.5 GiB), which a memory limit on a task must allow for.
# glibc reads GLIBC_TUNABLES at process start; other C libraries ignore it. Set on the task, it
# replaces a GLIBC_TUNABLES of the surrounding environment (kfp.local's or the cluster's).
# ARROW_DEFAULT_MEMORY_POOL=system sends pyarrow's buffers (reading, taking and writing the tables
# between steps) to that same malloc, so they reuse the memory pandas has just freed instead of
# faulting in fresh pages from pyarrow's own allocator (mimalloc): preprocess at 1,000,000 rows
# takes and writes its three splits in 0.37 s instead of 0.65 s, with less peak RSS.
# NUMPY_MADVISE_HUGEPAGE=0 (a documented numpy setting) stops numpy from asking the kernel for
# transparent huge pages on every array of 4 MiB or more. Under the common THP setting (enabled and
# defrag both "madvise", as on this machine and on Ubuntu nodes) each such fault may compact memory
# to find 2 MiB on the spot: a train task at 1,000,000 rows spent 1.75-2.1 s of system time in its
# first fit with them and 0.4-0.5 s without, its user time unchanged (45.9 s either way for a
# HistGradientBoosting candidate, where fewer TLB misses would have shown). A long-lived process
# pays that once; a task process pays it every time. docs/benchmarks.md has the measurements.
TASK_ENVIRONMENT = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    "NUMPY_MADVISE_HUGEPAGE": "0",
}


class _TasksWithEnvironment:
    """The components, each of whose tasks gets :data:`TASK_ENVIRONMENT` (so no task can miss it)."""

    def __init__(self, ops):
        self._ops = ops

    def __getattr__(self, name: str):
        component = getattr(self._ops, name)

        def create_task(**arguments):
            task = component(**arguments)
            for variable, value in TASK_ENVIRONMENT.items():
                task.set_env_variable(variable, value)
            return task

        return create_task


def _selection_label(config: TollgateConfig) -> str:
    """The metric select ranks by, as its display name shows it: with ``data.task: auto`` the data
    decides at run time, so both are named."""
    binary, multiclass = config.train.selection_metric, config.train.multiclass_selection_metric
    return {"binary": binary, "multiclass": multiclass}.get(config.data.task, f"{binary} (multiclass: {multiclass})")


def s3_env_from_secret(config: TollgateConfig, for_cluster: bool = False):
    """A function that gives a task the S3 credentials from ``kfp.s3_secret``.

    A package compiled for the cluster always carries them: the registry and the data source
    are run parameters, so a package compiled with local defaults may well run with
    ``registry_uri=s3://...``. Local runs (kfp.local ignores Kubernetes settings anyway) get
    them only when the config itself uses S3.
    """
    if not (for_cluster or is_s3_uri(config.registry.uri) or is_s3_uri(config.data.source)):
        return lambda task: task
    from kfp import kubernetes

    return lambda task: kubernetes.use_secret_as_env(task, config.kfp.s3_secret, {key: key for key in S3_SECRET_KEYS})


def build_pipeline(config: TollgateConfig, use_schedule_time: bool = False, for_cluster: bool = False):
    """Return the ``@dsl.pipeline`` function for ``config``.

    ``use_schedule_time`` wires KFP's scheduled-time placeholder into ingest, for
    recurring runs that train on a daily window; one-off runs pass ``scheduled_time``.
    ``for_cluster`` gives every S3-touching task the ``kfp.s3_secret`` credentials.
    """
    ops = _TasksWithEnvironment(build_components(config.pipeline.image))
    with_s3 = s3_env_from_secret(config, for_cluster)
    # Each task gets only the settings it uses: its cache key must not change when another step's does.
    policy_json = GatePolicy.from_config(config.gate.model_dump()).to_json()
    candidates = loop_items(config_grid(config))

    def _training(data_source, registry_uri, model_name, scheduled_time):
        """Every task of a training run (called inside the pipeline function, so tasks attach to it)."""
        ingest_task = ops.ingest(
            settings_json=IngestSettings.from_config(config).to_json(), data_source=data_source,
            scheduled_time=scheduled_time,
        ).set_display_name("Ingest data")
        with_s3(ingest_task)
        validate_task = ops.validate(settings_json=ValidateSettings.from_config(config).to_json(), raw=ingest_task.outputs["raw"],
                                     registry_uri=registry_uri, model_name=model_name
                                     ).set_display_name("Validate data").set_caching_options(False)
        with_s3(validate_task)
        preprocess_task = ops.preprocess(settings_json=PreprocessSettings.from_config(config).to_json(), raw=ingest_task.outputs["raw"]
                                         ).set_display_name("Split and describe features").after(validate_task)

        with dsl.ParallelFor(candidates, parallelism=config.train.parallelism, name="candidates") as candidate:
            train_task = ops.train(candidate=candidate, train=preprocess_task.outputs["train"],
                                   validation=preprocess_task.outputs["validation"],
                                   test=preprocess_task.outputs["test"],
                                   features=preprocess_task.outputs["features"]
                                   ).set_display_name("Train candidate")
            threads = str(config.train.threads_per_candidate)
            for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                train_task.set_env_variable(variable, threads)
            train_task.set_cpu_request(threads)
        select_task = ops.select(models=dsl.Collected(train_task.outputs["model"]),
                                 selection_metric=config.train.selection_metric,
                                 multiclass_selection_metric=config.train.multiclass_selection_metric
                                 ).set_display_name(f"Select best by validation {_selection_label(config)}")

        # The champion can change between runs with identical inputs: never serve these from cache.
        evaluate_task = ops.evaluate(settings_json=EvaluateSettings.from_config(config).to_json(), best=select_task.outputs["best"], test=preprocess_task.outputs["test"],
                                     features=preprocess_task.outputs["features"], registry_uri=registry_uri,
                                     model_name=model_name
                                     ).set_display_name("Evaluate candidate and champion").set_caching_options(False)
        with_s3(evaluate_task)
        gate_task = ops.gate(policy_json=policy_json, evaluation=evaluate_task.outputs["evaluation"]
                             ).set_display_name("Gate: promote?").set_caching_options(False)

        with dsl.If(gate_task.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (KFP needs ==)
            infra_task = ops.infra_validate(settings_json=InfraValidateSettings.from_config(config).to_json(),
                                            best=select_task.outputs["best"],
                                            test=preprocess_task.outputs["test"],
                                            features=preprocess_task.outputs["features"]
                                            ).set_display_name("Infra-validate in the model server")
            infra_task.set_caching_options(False)
            register_task = ops.register(best=select_task.outputs["best"], features=preprocess_task.outputs["features"],
                                         evaluation=evaluate_task.outputs["evaluation"],
                                         decision=gate_task.outputs["decision"], raw=ingest_task.outputs["raw"],
                                         data_schema=validate_task.outputs["data_schema"],
                                         registry_uri=registry_uri, model_name=model_name,
                                         run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER
                                         ).set_display_name("Register version").after(infra_task)
            register_task.set_caching_options(False)
            with_s3(register_task)
            deploy_task = ops.deploy(settings_json=DeploySettings.from_config(config).to_json(), registry_uri=registry_uri, model_name=model_name,
                                     version=register_task.output
                                     ).set_display_name(f"Deploy ({config.deploy.target})").set_caching_options(False)
            with_s3(deploy_task)

        # Outside the dsl.If so a blocked candidate still gets its report (why it was blocked).
        ops.report(model_name=model_name, run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, raw=ingest_task.outputs["raw"],
                   validation=validate_task.outputs["report"], evaluation=evaluate_task.outputs["evaluation"],
                   decision=gate_task.outputs["decision"]
                   ).set_display_name("Report (HTML)").set_caching_options(False)

    @dsl.pipeline(name=config.pipeline.name,
                  description="Gated training of a tabular classifier: train, compare with the champion, promote.")
    def tollgate_training(
        data_source: str = config.data.source,
        registry_uri: str = config.registry.uri,
        model_name: str = config.model_name,
        scheduled_time: str = "",
    ):
        when = dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER if use_schedule_time else scheduled_time
        if config.retrain.when == "always":
            _training(data_source, registry_uri, model_name, when)
            return
        # retrain.when: drift | new_data — the first step decides whether anything below runs.
        check_task = ops.retrain_check(settings_json=RetrainSettings.from_config(config).to_json(),
                                       data_source=data_source, scheduled_time=when,
                                       registry_uri=registry_uri, model_name=model_name
                                       ).set_display_name(f"Retrain? ({config.retrain.when})")
        check_task.set_caching_options(False)
        with_s3(check_task)
        with dsl.If(check_task.outputs["Output"] == True, name="retrain-needed"):  # noqa: E712 (KFP needs ==)
            _training(data_source, registry_uri, model_name, when)

    return tollgate_training


def compile_pipeline(config: TollgateConfig, output, use_schedule_time: bool = False) -> Path:
    """Compile the DAG to KFP IR YAML at ``output``: a package for the cluster, S3 credentials included."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(config, use_schedule_time, for_cluster=True), str(output))
    return output
