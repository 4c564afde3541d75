"""``tollgate run`` and ``tollgate compile``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tollgate.cli.common import (
    ConfigOption,
    JsonOption,
    ModelNameOption,
    RegistryOption,
    console,
    emit_json,
    guarded,
    load,
)

# Distinct from 1 (a failed run) so a script can tell "the data or code is broken" from
# "the candidate was not good enough".
EXIT_BLOCKED = 3


@guarded
def run(
    config: Path | None = ConfigOption,
    data: str | None = typer.Option(None, "--data", help="'builtin', a CSV/Parquet path or s3://bucket/key. "
                                       "Default: data.source from the config."),
    target: str | None = typer.Option(None, "--target", help="Label column. Default: data.target."),
    drop: list[str] | None = typer.Option(None, "--drop", help="Column to drop before training (repeatable); "
                                             "replaces data.drop."),
    positive_label: str | None = typer.Option(None, "--positive-label", help="Label value of the positive class."),
    registry: str | None = RegistryOption,
    model_name: str | None = ModelNameOption,
    rows: int | None = typer.Option(None, "--rows", help="Rows for the built-in generator (data.builtin.rows)."),
    drift: float | None = typer.Option(None, "--drift", help="Drift knob of the built-in generator, 0..1."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the built-in generator."),
    task: str | None = typer.Option(None, "--task", help="auto, binary or multiclass (data.task)."),
    classes: int | None = typer.Option(None, "--classes", help="Classes of the built-in generator's target "
                                          "(data.builtin.classes); 3 or more also make 'risk_band' the target "
                                          "unless --target is given."),
    scheduled_time: str = typer.Option("", "--scheduled-time", help="Act as a scheduled run at this RFC 3339 time "
                                       "(uses data.window_days)."),
    as_json: bool = JsonOption,
    fail_on_block: bool = typer.Option(False, "--fail-on-block", help=f"Exit with {EXIT_BLOCKED} (not 0) when the "
                                       "gate blocks the candidate, for scripts and CI. A failed run exits 1."),
) -> None:
    """Run the whole gated DAG locally with kfp.local and print a summary.

    Exit codes: 0 the run finished (promoted, or blocked by the gate without
    --fail-on-block); 1 the run failed (bad config or data, a failing step); 3 the gate
    blocked the candidate and --fail-on-block was given.
    """
    from tollgate.local_run import execute_pipeline, new_run_dir
    from tollgate.registry import open_registry
    from tollgate.summary import SUMMARY_FILE, build_summary, render_summary

    if classes is not None and classes >= 3 and target is None:
        from tollgate.data.builtin import MULTICLASS_TARGET

        target = MULTICLASS_TARGET
    cfg = load(config, data__source=data, data__target=target, data__drop=drop, data__task=task,
               data__builtin__classes=classes,
               data__positive_label=_label(positive_label), registry__uri=registry, model_name=model_name,
               data__builtin__rows=rows, data__builtin__drift=drift, data__builtin__seed=seed)
    reg = open_registry(cfg.registry.uri)
    _check_champion(reg, cfg.model_name)
    run_dir = new_run_dir(cfg.run.root)
    arguments = {"data_source": cfg.data.source, "registry_uri": reg.uri, "model_name": cfg.model_name,
                 "scheduled_time": scheduled_time}

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=as_json) as progress:
        overall = progress.add_task(escape(f"Running {cfg.pipeline.name} locally"), total=None)
        running: dict[str, int] = {}

        def on_event(event: str, task: str) -> None:
            running[task] = running.get(task, 0) + (1 if event == "start" else -1)
            active = ", ".join(name for name, count in running.items() if count > 0)
            progress.update(overall, description=escape(f"Running {cfg.pipeline.name}: {active or '...'}"))
            if event != "start" and not as_json:
                mark = "[green]done[/]" if event == "success" else f"[red]{event}[/]"
                progress.console.print(f"  {escape(task):<16} {mark}")

        outcome = execute_pipeline(cfg, arguments, run_dir, on_event)

    summary = build_summary(outcome, reg, cfg.model_name)
    if outcome.pipeline_dir is not None:
        from tollgate.cli.report import publish_report

        # A browser-ready copy beside the run (KFP's HTML artifact has no .html suffix); a run
        # stopped early still gets a report of what it produced.
        try:
            failure = None if outcome.succeeded else f"{summary.failed_step or 'a step'}: {summary.error}"
            summary.report = str(publish_report(run_dir, cfg.model_name, failure)[0])
        except Exception as exc:  # the run's outcome matters more than its report
            summary.report_error = f"{type(exc).__name__}: {exc}"
    printed = summary.to_dict()
    (run_dir / SUMMARY_FILE).write_text(json.dumps(printed, indent=2, default=str))
    if as_json:
        emit_json(printed)
    else:
        render_summary(summary, console)
    if not outcome.succeeded:
        raise typer.Exit(1)
    if fail_on_block and summary.blocked:
        raise typer.Exit(EXIT_BLOCKED)


def _check_champion(reg, model_name: str) -> None:
    """Fail in one line before any training if the aliases or the champion's files are unreadable
    (evaluate checks again inside the DAG, which is what protects cluster runs)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tollgate-champion-") as tmp:
        reg.download_champion(model_name, tmp)


def _label(value: str | None):
    # CLI values are text; a numeric label should match numeric label columns.
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


@guarded
def compile(
    config: Path | None = ConfigOption,
    output: Path = typer.Option(Path("build/tollgate-pipeline.yaml"), "--output", "-o", help="Where to write the IR YAML."),
    image: str | None = typer.Option(None, "--image", help="Component image. Default: pipeline.image."),
    scheduled: bool = typer.Option(False, "--scheduled", help="Wire KFP's scheduled time into ingest (recurring runs)."),
) -> None:
    """Compile the DAG to KFP IR YAML for upload or `tollgate submit`."""
    from tollgate.pipelines.training import compile_pipeline

    cfg = load(config, pipeline__image=image)
    path = compile_pipeline(cfg, output, use_schedule_time=scheduled)
    console.print(f"Compiled {cfg.pipeline.name} (image {cfg.pipeline.image}) to {path}", markup=False)
