"""Runs and recurring runs on a Kubeflow Pipelines 2.17 cluster, through ``kfp.Client``.

The DAG is compiled from the config right before it is sent, so what runs in the
cluster is exactly what ``tollgate compile`` would write. Standalone KFP is single-user:
no KFP namespace is passed, the client's own default ('' in single-user mode) applies. Cluster pods cannot see the
developer's disk: the registry and the data must be ``s3://`` (or the built-in data).
"""

from __future__ import annotations

import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tollgate.cluster.cron import parse_cron
from tollgate.config import TollgateConfig
from tollgate.errors import TollgateError
from tollgate.s3 import is_s3_uri

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


class KfpError(TollgateError):
    """KFP is unreachable or refused a request."""


@dataclass(frozen=True)
class RunInfo:
    """One run as `tollgate runs` shows it."""

    run_id: str
    name: str
    state: str
    created_at: str
    finished_at: str
    error: str


def check_cluster_arguments(arguments: dict[str, Any]) -> None:
    """Refuse parameters that only make sense on this machine (pods cannot read local paths)."""
    registry = arguments.get("registry_uri", "")
    if not is_s3_uri(registry):
        raise TollgateError(f"registry {registry!r} is a local path that cluster pods cannot reach; "
                            "use the cluster's MinIO, e.g. --registry s3://models (kfp.registry_uri)")
    data = arguments.get("data_source", "")
    if data != "builtin" and not is_s3_uri(data):
        raise TollgateError(f"data source {data!r} is a local path that cluster pods cannot reach; "
                            "upload it to the MinIO 'data' bucket and pass --data s3://data/<file>")


def connect(host: str, timeout: float = 5.0):
    """A ``kfp.Client`` for ``host``, after a quick reachability check.

    kfp.Client retries its health check for ~25 s on a dead host; checking first turns
    that into an immediate, clear error.
    """
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise KfpError(f"KFP at {host} answered {exc.code} on {url}; is this the KFP API endpoint "
                       "(the kind setup maps it to http://localhost:30888)?") from None
    except (urllib.error.URLError, OSError) as exc:
        raise KfpError(f"cannot reach KFP at {host} ({getattr(exc, 'reason', exc)}); start the cluster with "
                       "`make cluster-up` or pass --host") from None
    import kfp

    return kfp.Client(host=host)


def _compiled(config: TollgateConfig, use_schedule_time: bool, directory: str) -> str:
    from tollgate.pipelines.training import compile_pipeline

    return str(compile_pipeline(config, Path(directory) / "tollgate-pipeline.yaml", use_schedule_time))


def submit(config: TollgateConfig, arguments: dict[str, Any], run_name: str | None = None, client=None):
    """Compile and start one run in ``kfp.experiment``; returns ``(run_id, client)``."""
    check_cluster_arguments(arguments)
    client = client or connect(config.kfp.host)
    run_name = run_name or f"{config.pipeline.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with tempfile.TemporaryDirectory() as tmp:
        package = _compiled(config, use_schedule_time=False, directory=tmp)
        result = client.create_run_from_pipeline_package(
            package, arguments=arguments, run_name=run_name, experiment_name=config.kfp.experiment,
            enable_caching=True)
    return result.run_id, client


def wait_for_run(client, run_id: str, timeout: float, on_update: Callable[[str, dict[str, str]], None],
                 poll_seconds: float = 5.0) -> str:
    """Poll a run until it ends; ``on_update(run_state, {task: state})`` on every poll. Returns the final state."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        state = str(run.state or "PENDING")
        details = getattr(run, "run_details", None)
        tasks = {task.display_name: str(task.state) for task in (getattr(details, "task_details", None) or [])
                 if task.display_name}
        on_update(state, tasks)
        if state in TERMINAL_STATES:
            return state
        if time.monotonic() >= deadline:
            raise KfpError(f"run {run_id} still {state} after {timeout:g} s; follow it in the KFP UI")
        time.sleep(poll_seconds)


def schedule(config: TollgateConfig, cron: str, arguments: dict[str, Any], job_name: str | None = None,
             client=None):
    """Create a daily-style recurring run: cron checked first, no catch-up, one run at a time.

    The package is compiled with KFP's scheduled-time placeholder wired into ingest, so
    each run trains on the ``data.window_days`` days before its own scheduled time.
    """
    parse_cron(cron)
    check_cluster_arguments(arguments)
    if not config.data.window_days:
        raise TollgateError("a schedule retrains on a daily window: set data.window_days (e.g. 30) so each run "
                            "reads the days before its scheduled time instead of the whole table")
    client = client or connect(config.kfp.host)
    experiment = client.create_experiment(config.kfp.experiment)
    with tempfile.TemporaryDirectory() as tmp:
        package = _compiled(config, use_schedule_time=True, directory=tmp)
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=job_name or f"{config.pipeline.name}-daily",
            description=f"Tollgate retraining, cron '{cron}' (UTC, seconds first)",
            cron_expression=cron, max_concurrency=1, no_catchup=True,
            params={key: value for key, value in arguments.items() if key != "scheduled_time"},
            pipeline_package_path=package)
    return recurring


def list_runs(config: TollgateConfig, limit: int = 20, client=None) -> list[RunInfo]:
    """The most recent runs of ``kfp.experiment`` (all runs if the experiment does not exist yet)."""
    client = client or connect(config.kfp.host)
    experiment_id = None
    try:
        experiment_id = client.get_experiment(experiment_name=config.kfp.experiment).experiment_id
    except Exception:  # kfp raises ValueError or ApiException for a missing experiment
        experiment_id = None
    response = client.list_runs(page_size=limit, sort_by="created_at desc", experiment_id=experiment_id)
    return [RunInfo(run_id=run.run_id, name=run.display_name or "", state=str(run.state or ""),
                    created_at=str(run.created_at or ""), finished_at=str(run.finished_at or ""),
                    error=str(getattr(run.error, "message", "") or "") if run.error else "")
            for run in (response.runs or [])]
