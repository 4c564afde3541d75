"""The short human summary at the end of ``tollgate run`` (and its ``--json`` form)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tollgate.config import METRIC_NAMES, MULTICLASS_METRIC_NAMES
from tollgate.local_run import RunOutcome, find_output, read_json, task_outputs
from tollgate.records import (
    DataLineage,
    Decision,
    DeployResult,
    Evaluation,
    InfraValidation,
    RetrainDecision,
    Selection,
    ValidationReport,
)
from tollgate.registry import Registry
from tollgate.steps.select import SELECTION_FILE

# In each run directory: what `tollgate run` printed (--json), read back by `tollgate report`.
SUMMARY_FILE = "summary.json"


def step_times(outcome: RunOutcome) -> list[dict[str, Any]]:
    """Per-step wall time in DAG order; ParallelFor iterations are summed and counted."""
    grouped: dict[str, list] = defaultdict(list)
    for timing in outcome.timings:
        grouped[timing.name].append(timing)
    rows = []
    for name, runs in grouped.items():
        wall = max(t.finished or t.started for t in runs) - min(t.started for t in runs)
        rows.append({"step": name, "tasks": len(runs), "seconds": round(wall, 3),
                     "status": "FAILURE" if any(t.status == "FAILURE" for t in runs) else runs[-1].status})
    return rows


def build_summary(outcome: RunOutcome, registry: Registry, model_name: str) -> dict[str, Any]:
    """Collect what the run decided from its artifacts and the registry."""
    summary: dict[str, Any] = {
        "run_dir": str(outcome.run_dir),
        "log_file": str(outcome.log_file),
        "succeeded": outcome.succeeded,
        "total_seconds": round(outcome.total_seconds, 2),
        "steps": step_times(outcome),
        "model_name": model_name,
        "registry": registry.uri,
    }
    if not outcome.succeeded:
        summary["error"] = outcome.error
        summary["failed_step"] = outcome.failed_task
    pipeline_dir = outcome.pipeline_dir
    if pipeline_dir is None:
        return summary
    retrain = read_json(find_output(pipeline_dir, "retrain-check", "decision") or pipeline_dir / "-")
    if retrain:
        decided = RetrainDecision.from_dict(retrain)
        summary["retrain"] = decided.to_dict(tagged=False)
        if not decided.train:
            summary["skipped"] = decided.message
    ingest = task_outputs(pipeline_dir, "ingest").get("artifacts", {}).get("raw", {}).get("artifacts", [{}])[0]
    if ingest:
        summary["data"] = DataLineage.from_metadata(ingest.get("metadata", {})).to_dict()
    validation = read_json(find_output(pipeline_dir, "validate", "report") or pipeline_dir / "-")
    if validation:
        summary["validation"] = ValidationReport.from_dict(validation).to_dict(tagged=False)
    best = find_output(pipeline_dir, "select", "best")
    if best and (best / SELECTION_FILE).is_file():
        selection = Selection.from_json((best / SELECTION_FILE).read_text())
        summary["leaderboard"] = [asdict(entry) for entry in selection.leaderboard]
    evaluation = read_json(find_output(pipeline_dir, "evaluate", "evaluation") or pipeline_dir / "-")
    if evaluation:
        record = Evaluation.from_dict(evaluation)
        candidate = record.candidate
        summary["candidate"] = {"candidate_id": candidate.candidate_id, "family": candidate.family,
                                "validation_metrics": candidate.validation_metrics,
                                "selection_metric": candidate.selection_metric, "params": candidate.params,
                                "test_metrics": candidate.metrics, "fairness": candidate.fairness_measures()}
        if candidate.multiclass:
            # Binary summaries keep exactly their keys; these exist only for multiclass runs.
            summary["candidate"].update(task="multiclass", classes=candidate.classes,
                                        per_class=(None if candidate.per_class is None
                                                   else [row.to_dict() for row in candidate.per_class]),
                                        confusion_matrix=candidate.confusion_matrix)
            if candidate.fairness_skipped:
                summary["candidate"]["fairness_skipped"] = candidate.fairness_skipped
        # Only what is known: {"version", "metrics"} or {"version", "error"}.
        summary["champion"] = ({k: v for k, v in asdict(record.champion).items()
                                if v is not None and k in ("version", "metrics", "error")}
                               if record.champion else None)
    decision = read_json(find_output(pipeline_dir, "gate", "decision") or pipeline_dir / "-")
    if decision:
        summary["gate"] = Decision.from_dict(decision).to_dict(tagged=False)
    infra = read_json(find_output(pipeline_dir, "infra-validate", "report") or pipeline_dir / "-")
    if infra:
        summary["infra_validation"] = InfraValidation.from_dict(infra).to_dict(tagged=False)
    registered = task_outputs(pipeline_dir, "register").get("parameterValues", {}).get("Output")
    if registered is not None:
        summary["registered_version"] = int(registered)
    report = find_output(pipeline_dir, "report", "html")
    if report:
        summary["report"] = str(report)
    deploy = read_json(find_output(pipeline_dir, "deploy", "result") or pipeline_dir / "-")
    if deploy:
        deployed = DeployResult.from_dict(deploy)
        summary["deploy"] = deployed.to_dict(tagged=False)
        summary["promoted"] = deployed.promoted
    summary["aliases"] = registry.aliases(model_name)
    return summary


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _e(value: Any) -> str:
    """Any dynamic value as text Rich prints literally: ``[lowercase ...]`` in a message, a
    candidate id or a hint would otherwise be read as a style tag and vanish."""
    return escape(str(value))


def _rows(value: Any) -> str:
    # Artifact metadata turns ints into floats (KFP's Struct): show 32,561, not 32,561.0.
    return f"{int(value):,}" if isinstance(value, (int, float)) else _e(value)


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """Print the summary as a few compact tables."""
    steps = Table(title="Steps", show_edge=False, header_style="bold")
    for column in ("step", "tasks", "seconds", "status"):
        steps.add_column(column, justify="right" if column in ("tasks", "seconds") else "left")
    for row in summary["steps"]:
        style = "red" if row["status"] == "FAILURE" else None
        steps.add_row(_e(row["step"]), str(row["tasks"]), f"{row['seconds']:.2f}", _e(row["status"]), style=style)
    console.print(steps)

    retrain = summary.get("retrain")
    if retrain:
        style = "yellow bold" if not retrain.get("train", True) else "bold"
        label = "Skipped" if not retrain.get("train", True) else "Retrain"
        console.print(f"[{style}]{label}[/] (retrain.when {_e(retrain.get('when'))}): {_e(retrain.get('message'))}",
                      soft_wrap=True)
    data = summary.get("data")
    if data:
        window = f", window {_e(data['window'][0])} .. {_e(data['window'][1])}" if data.get("window") else ""
        console.print(f"[bold]Data[/] {_e(data['source'])}: {_rows(data['rows'])} rows{window}")
        for note in data.get("notes") or []:
            console.print(f"  [dim]-[/] {_e(note)}", soft_wrap=True)
    validation = summary.get("validation")
    if validation:
        warnings = [a for a in validation.get("anomalies", []) if not a.get("blocking")]
        for anomaly in warnings:
            console.print(f"[yellow]warning[/] {_e(anomaly['column'])}: {_e(anomaly['check'])} "
                          f"(observed {_e(anomaly['observed'])}; allowed {_e(anomaly['allowed'])})")
        drift = validation.get("drift") or []
        if drift:
            drifted = [d["column"] for d in drift if d["drifted"]]
            listed = f" ({_e(', '.join(map(str, drifted)))})" if drifted else ""
            console.print(f"[bold]Drift[/] vs production v{validation.get('reference_version')}: "
                          f"{len(drifted)} of {len(drift)} features drifted{listed}")

    candidate = summary.get("candidate")
    if candidate:
        params = _e(", ".join(f"{k}={v}" for k, v in sorted(candidate["params"].items())))
        leaders = summary.get("leaderboard") or []
        console.print(f"[bold]Selected[/] {_e(candidate['candidate_id'])} ({_e(candidate['family'])}; {params}) "
                      f"out of {len(leaders)} candidates by validation {_e(candidate.get('selection_metric'))}")
        champion = summary.get("champion") or {}
        metrics = Table(title="Test metrics", show_edge=False, header_style="bold")
        metrics.add_column("metric")
        metrics.add_column("challenger", justify="right")
        label = f"champion v{champion['version']}" if champion.get("version") is not None else "champion"
        metrics.add_column(label, justify="right")
        multiclass = candidate.get("task") == "multiclass"
        for name in MULTICLASS_METRIC_NAMES if multiclass else METRIC_NAMES:
            theirs = (champion.get("metrics") or {}).get(name)
            metrics.add_row(name, _fmt(candidate["test_metrics"].get(name)), _fmt(theirs))
        console.print(metrics)
        if multiclass:
            per_class = Table(title=f"Per class ({len(candidate.get('classes') or [])} classes, model order)",
                              show_edge=False, header_style="bold")
            for column in ("class", "precision", "recall", "f1", "support"):
                per_class.add_column(column, justify="left" if column == "class" else "right")
            for row in candidate.get("per_class") or []:
                per_class.add_row(escape(str(row["class"])), _fmt(row["precision"]), _fmt(row["recall"]),
                                  _fmt(row["f1"]), str(row["support"]))
            console.print(per_class)
            if candidate.get("fairness_skipped"):
                console.print(f"[yellow]fairness skipped[/] {escape(candidate['fairness_skipped'])}", soft_wrap=True)
        for attribute, record in (candidate.get("fairness") or {}).items():
            console.print(f"[bold]Fairness[/] {_e(attribute)}: disparate impact {_fmt(record['disparate_impact'])}, "
                          f"equal-opportunity difference {_fmt(record['equal_opportunity_difference'])}")
        if champion.get("error"):
            console.print(f"[red]champion v{champion['version']} not comparable:[/] {_e(champion['error'])}")
        elif not champion:
            console.print("No champion yet: only absolute thresholds apply.")

    gate = summary.get("gate")
    if gate:
        verdict = "[green]PASSED[/]" if gate["passed"] else "[red]BLOCKED[/]"
        console.print(f"[bold]Gate[/] {verdict}")
        for reason in gate["reasons"]:
            console.print(f"  - {_e(reason)}")

    infra = summary.get("infra_validation")
    if infra:
        verdict = "[green]PASSED[/]" if infra.get("passed") else "[red]BLOCKED[/]"
        console.print(f"[bold]Infra-validation[/] {verdict}: {escape(str(infra.get('reason', '')))}", soft_wrap=True)
        for warning in infra.get("warnings") or []:
            console.print(f"[yellow]warning[/] {escape(warning)}", soft_wrap=True)

    if "registered_version" in summary:
        aliases = summary.get("aliases", {})
        parts = [f"{_e(name)} -> v{record['version']}" for name, record in sorted(aliases.items())]
        console.print(f"[bold]Registered[/] {_e(summary['model_name'])} v{summary['registered_version']} "
                      f"in {_e(summary['registry'])}; aliases: {', '.join(parts) or 'none'}")
        deploy = summary.get("deploy") or {}
        if deploy and not deploy.get("promoted", True):
            console.print(f"[yellow bold]Not promoted:[/] {_e(deploy.get('detail', ''))}", soft_wrap=True)
    elif summary.get("succeeded") and gate and not gate["passed"]:
        console.print("Nothing registered; aliases unchanged.")
    if not summary["succeeded"]:
        step = summary.get("failed_step")
        # Unwrapped: an error message or a path broken across lines cannot be searched or copied.
        console.print(f"[red bold]Run failed[/]{f' in {_e(step)}' if step else ''}: {_e(summary.get('error'))}",
                      soft_wrap=True)
    if summary.get("report"):
        console.print(f"[bold]Report[/] {_e(summary['report'])}", soft_wrap=True)
    if summary.get("report_error"):
        console.print(f"[yellow]report not written:[/] {_e(summary['report_error'])}", soft_wrap=True)
    console.print(f"[dim]{summary['total_seconds']:.1f}s; run directory {_e(summary['run_dir'])}; "
                  f"KFP log {_e(summary['log_file'])}[/]", soft_wrap=True)
