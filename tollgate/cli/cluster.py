"""``tollgate submit``, ``tollgate schedule`` and ``tollgate runs``: the DAG on a KFP cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tollgate.cli.common import ConfigOption, JsonOption, ModelNameOption, console, emit_json, guarded, load

HostOption = typer.Option(None, "--host", help="KFP API endpoint. Default: kfp.host (kind: http://localhost:30888).")
ClusterRegistryOption = typer.Option(None, "--registry", help="Registry as the pipeline pods see it. "
                                     "Default: kfp.registry_uri (s3://models).")
DataOption = typer.Option(None, "--data", help="'builtin' or s3://data/<file>. Default: data.source.")
TargetOption = typer.Option(None, "--deploy-target", help="'local' (alias only) or 'kserve' (InferenceService). "
                            "Default: deploy.target.")
ExperimentOption = typer.Option(None, "--experiment", help="KFP experiment. Default: kfp.experiment.")


def _cluster_config(config: Path | None, host, registry, data, target, experiment, model_name, **extra):
    # The registry is compiled into the config too, so tasks get the S3 Secret wired in (pipelines/training.py).
    cfg = load(config, kfp__host=host, kfp__experiment=experiment, data__source=data, deploy__target=target,
               model_name=model_name, **extra)
    cfg.registry.uri = registry or cfg.kfp.registry_uri
    arguments = {"data_source": cfg.data.source, "registry_uri": cfg.registry.uri, "model_name": cfg.model_name}
    return cfg, arguments


@guarded
def submit(
    config: Path | None = ConfigOption,
    host: str | None = HostOption,
    registry: str | None = ClusterRegistryOption,
    data: str | None = DataOption,
    deploy_target: str | None = TargetOption,
    experiment: str | None = ExperimentOption,
    model_name: str | None = ModelNameOption,
    run_name: str | None = typer.Option(None, "--run-name", help="Run name. Default: <pipeline>-<UTC time>."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish, showing task progress."),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds --wait waits before giving up."),
    as_json: bool = JsonOption,
) -> None:
    """Compile the DAG and start one run on Kubeflow Pipelines."""
    from tollgate.cluster.kfp_runs import submit as submit_run
    from tollgate.cluster.kfp_runs import wait_for_run

    cfg, arguments = _cluster_config(config, host, registry, data, deploy_target, experiment, model_name)
    run_id, client = submit_run(cfg, arguments, run_name)
    if not wait:
        if as_json:
            emit_json({"run_id": run_id, "experiment": cfg.kfp.experiment, "arguments": arguments})
        else:
            console.print(f"Submitted run [bold]{run_id}[/] to experiment {cfg.kfp.experiment!r} at {cfg.kfp.host}; "
                          "follow it with `tollgate runs` or in the KFP UI")
        return

    seen: dict[str, str] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=as_json) as progress:
        overall = progress.add_task(f"Run {run_id}: PENDING", total=None)

        def on_update(state: str, tasks: dict[str, str]) -> None:
            progress.update(overall, description=f"Run {run_id}: {state}")
            for name, task_state in tasks.items():
                if seen.get(name) != task_state and task_state in ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"):
                    if not as_json:
                        progress.console.print(f"  {name:<40} {task_state}")
                seen[name] = task_state

        final = wait_for_run(client, run_id, timeout, on_update)
    if as_json:
        emit_json({"run_id": run_id, "state": final, "tasks": seen})
    else:
        colour = "green" if final == "SUCCEEDED" else "red"
        console.print(f"Run {run_id} [{colour}]{final}[/]")
    if final != "SUCCEEDED":
        raise typer.Exit(1)


@guarded
def schedule(
    cron: str = typer.Option(..., "--cron", help="KFP cron, 6 fields with SECONDS first, UTC: daily at 02:00 is "
                             "'0 0 2 * * *'."),
    config: Path | None = ConfigOption,
    host: str | None = HostOption,
    registry: str | None = ClusterRegistryOption,
    data: str | None = DataOption,
    deploy_target: str | None = TargetOption,
    experiment: str | None = ExperimentOption,
    model_name: str | None = ModelNameOption,
    window_days: int | None = typer.Option(None, "--window-days", help="Train on the N days before each "
                                              "scheduled time. Default: data.window_days."),
    job_name: str | None = typer.Option(None, "--name", help="Recurring run name. Default: <pipeline>-daily."),
    as_json: bool = JsonOption,
) -> None:
    """Create a recurring run (no catch-up, one at a time) that trains on the days before each scheduled time."""
    from tollgate.cluster.cron import parse_cron
    from tollgate.cluster.kfp_runs import schedule as create_schedule

    # Validate before anything else: a bad cron must not need a reachable cluster to be reported.
    upcoming = parse_cron(cron).next_times(datetime.now(UTC).replace(tzinfo=None), 3)
    cfg, arguments = _cluster_config(config, host, registry, data, deploy_target, experiment, model_name,
                                     data__window_days=window_days)
    recurring = create_schedule(cfg, cron, arguments, job_name)
    times = [f"{moment:%Y-%m-%d %H:%M:%S} UTC" for moment in upcoming]
    if as_json:
        emit_json({"recurring_run_id": recurring.recurring_run_id, "cron": cron, "next_runs": times,
                   "window_days": cfg.data.window_days})
        return
    console.print(f"Scheduled [bold]{recurring.display_name}[/] ({recurring.recurring_run_id}) with cron '{cron}': "
                  f"no catch-up, at most 1 run at a time, training on the {cfg.data.window_days} days before each "
                  "scheduled time")
    console.print("Next runs: " + ", ".join(times))


@guarded
def runs(
    config: Path | None = ConfigOption,
    host: str | None = HostOption,
    experiment: str | None = ExperimentOption,
    limit: int = typer.Option(20, "--limit", help="How many recent runs to list."),
    as_json: bool = JsonOption,
) -> None:
    """List recent runs of the experiment on Kubeflow Pipelines."""
    from dataclasses import asdict

    from tollgate.cluster.kfp_runs import list_runs

    cfg = load(config, kfp__host=host, kfp__experiment=experiment)
    found = list_runs(cfg, limit)
    if as_json:
        emit_json([asdict(run) for run in found])
        return
    if not found:
        console.print(f"No runs in experiment {cfg.kfp.experiment!r} at {cfg.kfp.host} yet; start one with `tollgate submit`.")
        return
    table = Table(title=f"Recent runs ({cfg.kfp.experiment} at {cfg.kfp.host})")
    for column in ("created", "name", "state", "run id", "error"):
        table.add_column(column)
    for run in found:
        table.add_row(run.created_at[:19], run.name, run.state, run.run_id, run.error[:60])
    console.print(table)
