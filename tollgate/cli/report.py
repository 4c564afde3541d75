"""``tollgate report [RUN]``: where a local run's HTML report is, and what it says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from rich.markup import escape

from tollgate.cli.common import ConfigOption, JsonOption, console, emit_json, err_console, guarded, load
from tollgate.errors import TollgateError

REPORT_FILE = "report.html"


def resolve_run_dir(run: str | None, runs_root: str | Path) -> Path:
    """``run`` as a path, or as a run name under ``runs_root``; the latest run there when None."""
    root = Path(runs_root).expanduser()
    if run is None:
        runs = sorted(p for p in root.glob("run-*") if p.is_dir())
        if not runs:
            raise TollgateError(f"no runs under {root}; start one with `tollgate run` or pass a run directory")
        return runs[-1]
    for candidate in (Path(run).expanduser(), root / run):
        if candidate.is_dir():
            return candidate.resolve()
    raise TollgateError(f"run {run!r} not found (neither a directory nor a run under {root})")


def collect_inputs(run_dir: Path, model_name: str):
    """The report's inputs from a run's artifacts; parts the run never produced stay None."""
    from tollgate.local_run import find_output, read_json, task_outputs
    from tollgate.records import DataLineage, Decision, Evaluation, RetrainDecision, ValidationReport
    from tollgate.steps.report import ReportInputs

    pipeline_dirs = [p for p in run_dir.iterdir() if p.is_dir()]
    if not pipeline_dirs:
        raise TollgateError(f"{run_dir} holds no pipeline outputs; did the run start?")
    pipeline_dir = pipeline_dirs[0]

    def artifact(task: str, output: str, record):
        """The output read as its record (an older run's format is upgraded), or None if the task did not run."""
        path = find_output(pipeline_dir, task, output)
        value = read_json(path) if path else None
        return record.from_dict(value) if value else None

    raw = task_outputs(pipeline_dir, "ingest").get("artifacts", {}).get("raw", {}).get("artifacts", [{}])[0]
    registered = task_outputs(pipeline_dir, "register").get("parameterValues", {}).get("Output")
    inputs = ReportInputs(model_name=model_name, run_id=pipeline_dir.name,
                          data=DataLineage.from_metadata(raw.get("metadata", {})) if raw else None,
                          validation=artifact("validate", "report", ValidationReport),
                          evaluation=artifact("evaluate", "evaluation", Evaluation),
                          decision=artifact("gate", "decision", Decision),
                          registered_version=int(registered) if registered is not None else None)
    retrain = find_output(pipeline_dir, "retrain-check", "decision")
    decided = RetrainDecision.from_json(retrain.read_text()) if retrain else None
    if decided is not None and not decided.train:
        # retrain.when decided this run had nothing to train on: say so, with its numbers.
        inputs.notes.append(decided.message)
    return pipeline_dir, inputs


def publish_report(run_dir: Path, model_name: str, failure: str | None = None) -> tuple[Path, list[str]]:
    """Put the run's report at ``<run_dir>/report.html`` and return it with a text summary.

    The report task's KFP artifact is copied when it exists; a run that stopped before
    the report task (for example at a blocking anomaly) gets one rendered now from the
    artifacts it did produce.
    """
    from tollgate.local_run import find_output
    from tollgate.records import DeployResult
    from tollgate.steps.report import render_report, text_summary

    pipeline_dir, inputs = collect_inputs(run_dir, model_name)
    inputs.failure = failure
    target = run_dir / REPORT_FILE
    artifact = find_output(pipeline_dir, "report", "html")
    deploy = find_output(pipeline_dir, "deploy", "result")
    deployed = DeployResult.from_json(deploy.read_text()) if deploy else None
    if deployed is not None and not deployed.promoted:
        # The report task ran before deploy found the champion changed: render it again with that.
        inputs.notes.append(f"Not promoted: {deployed.detail}")
        target.write_text(render_report(inputs))
    elif artifact:
        shutil.copyfile(artifact, target)
    else:
        inputs.notes.append("Rendered after the run: the run stopped before its report step.")
        target.write_text(render_report(inputs))
    return target, text_summary(inputs)


@guarded
def report(
    run: str | None = typer.Argument(None, help="Run directory or run name (run-...). Default: the latest "
                                        "run under run.root."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the path of a run's HTML report and a text summary of it."""
    cfg = load(config)
    run_dir = resolve_run_dir(run, cfg.run.root)
    from tollgate.summary import SUMMARY_FILE, RunSummary

    recorded = run_dir / SUMMARY_FILE
    summary = None
    if recorded.is_file():
        try:
            summary = RunSummary.from_dict(json.loads(recorded.read_text()))
        except ValueError as exc:  # not JSON, or not a run summary; the report is rebuilt from the artifacts anyway
            err_console.print(f"[yellow]warning:[/] {escape(str(recorded))} is unreadable ({escape(repr(exc))}); "
                              "the report says nothing of how the run ended", soft_wrap=True)
    failure = summary.error if summary is not None and not summary.succeeded else None
    path, lines = publish_report(run_dir, summary.model_name if summary is not None else cfg.model_name, failure)
    if as_json:
        emit_json({"run_dir": str(run_dir), "report": str(path), "summary": lines})
        return
    console.print(f"[bold]Report[/] {escape(str(path))}", soft_wrap=True)
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
