"""The short human summary at the end of ``tollgate run`` (and its ``--json`` form)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tollgate.config import METRIC_NAMES, MULTICLASS_METRIC_NAMES
from tollgate.local_run import RunOutcome, find_output, read_json, task_outputs
from tollgate.records import (
    MULTICLASS,
    CandidateEvaluation,
    ClassMetrics,
    DataLineage,
    Decision,
    DeployResult,
    Evaluation,
    InfraValidation,
    LeaderboardEntry,
    RetrainDecision,
    Selection,
    ValidationReport,
    field_values,
    nested,
    reading,
)
from tollgate.registry import Registry
from tollgate.steps.select import SELECTION_FILE

# In each run directory: what `tollgate run` printed (--json), read back by `tollgate report`.
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class StepTime:
    """One DAG step's wall time; a ParallelFor's iterations are one step, counted in ``tasks``."""

    step: str
    tasks: int
    seconds: float
    status: str


@dataclass
class CandidateSummary:
    """The selected candidate as the summary shows it: what it is and how it did on the test split."""

    candidate_id: str
    family: str
    validation_metrics: dict[str, float]
    selection_metric: str | None
    params: dict[str, Any]
    test_metrics: dict[str, float]
    fairness: dict[str, dict[str, float | None]] = field(default_factory=dict)  # attribute -> measure -> value
    # A multiclass candidate only (a binary summary keeps exactly the keys above).
    task: str | None = None
    classes: list[Any] | None = None
    per_class: list[ClassMetrics] | None = None
    confusion_matrix: list[list[int]] | None = None
    fairness_skipped: str | None = None

    @property
    def multiclass(self) -> bool:
        return self.task == MULTICLASS

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> CandidateSummary:
        known = field_values(cls, value)
        if known.get("per_class") is not None:
            known["per_class"] = [ClassMetrics.from_dict(row) for row in known["per_class"]]
        return cls(**known)

    @classmethod
    def of(cls, candidate: CandidateEvaluation) -> CandidateSummary:
        summary = cls(candidate_id=candidate.candidate_id, family=candidate.family,
                      validation_metrics=candidate.validation_metrics, selection_metric=candidate.selection_metric,
                      params=candidate.params, test_metrics=candidate.metrics, fairness=candidate.fairness_measures())
        if candidate.multiclass:
            summary.task, summary.classes = MULTICLASS, candidate.classes
            summary.per_class, summary.confusion_matrix = candidate.per_class, candidate.confusion_matrix
            summary.fairness_skipped = candidate.fairness_skipped or None
        return summary

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.per_class is not None:
            values["per_class"] = [row.to_dict() for row in self.per_class]  # the class under "class"
        return {k: v for k, v in values.items()
                if k not in ("task", "classes", "per_class", "confusion_matrix", "fairness_skipped")
                or (self.multiclass and (k != "fairness_skipped" or v))}


@dataclass(frozen=True)
class ChampionSummary:
    """The champion the candidate was compared with: its test metrics, or why it could not be scored."""

    version: int | None
    metrics: dict[str, float] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:  # only what is known: {"version", "metrics"} or {"version", "error"}
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class RunSummary:
    """What ``tollgate run`` prints at the end, and writes as ``--json`` and :data:`SUMMARY_FILE`: the
    run's steps and outcome, and the records its steps wrote (each read as its typed record). A
    record is None when the run stopped before the step that writes it (or skipped it)."""

    run_dir: str
    log_file: str
    succeeded: bool
    total_seconds: float
    steps: list[StepTime]
    model_name: str
    registry: str
    error: str | None = None
    failed_step: str | None = None
    retrain: RetrainDecision | None = None
    data: DataLineage | None = None
    validation: ValidationReport | None = None
    leaderboard: list[LeaderboardEntry] | None = None
    candidate: CandidateSummary | None = None
    champion: ChampionSummary | None = None       # None with a candidate: there was no champion
    gate: Decision | None = None
    infra_validation: InfraValidation | None = None
    registered_version: int | None = None
    report: str | None = None                     # the HTML report's path
    deploy: DeployResult | None = None
    aliases: dict[str, Any] | None = None         # None: the run stopped before the registry was read
    report_error: str | None = None               # why the report could not be written

    @property
    def skipped(self) -> str | None:
        """Why retrain-check decided not to train, when it did."""
        return self.retrain.message if self.retrain is not None and not self.retrain.train else None

    @property
    def blocked(self) -> bool:
        """Whether the gate decided, and blocked the candidate."""
        return self.gate is not None and not self.gate.passed

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``tollgate run --json``): a key for each part the run got to, records untagged."""
        values: dict[str, Any] = {
            "run_dir": self.run_dir, "log_file": self.log_file, "succeeded": self.succeeded,
            "total_seconds": self.total_seconds, "steps": [asdict(step) for step in self.steps],
            "model_name": self.model_name, "registry": self.registry}
        if not self.succeeded:
            values.update(error=self.error, failed_step=self.failed_step)
        if self.retrain is not None:
            values["retrain"] = self.retrain.to_dict(tagged=False)
            if self.skipped is not None:
                values["skipped"] = self.skipped
        if self.data is not None:
            values["data"] = self.data.to_dict()
        if self.validation is not None:
            values["validation"] = self.validation.to_dict(tagged=False)
        if self.leaderboard is not None:
            values["leaderboard"] = [asdict(entry) for entry in self.leaderboard]
        if self.candidate is not None:
            values["candidate"] = self.candidate.to_dict()
            values["champion"] = self.champion.to_dict() if self.champion is not None else None
        for key, record in (("gate", self.gate), ("infra_validation", self.infra_validation)):
            if record is not None:
                values[key] = record.to_dict(tagged=False)
        if self.registered_version is not None:
            values["registered_version"] = self.registered_version
        if self.report is not None:
            values["report"] = self.report
        if self.deploy is not None:
            values["deploy"] = self.deploy.to_dict(tagged=False)
            values["promoted"] = self.deploy.promoted
        if self.aliases is not None:
            values["aliases"] = self.aliases
        if self.report_error is not None:
            values["report_error"] = self.report_error
        return values

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> RunSummary:
        """Read the JSON form back (a run directory's :data:`SUMMARY_FILE`, or ``run --json``)."""
        if not isinstance(value, dict):
            raise ValueError(f"a run summary is a JSON object, not a JSON {type(value).__name__}")

        def record(key: str, read: Any) -> Any:
            return read(value[key]) if value.get(key) is not None else None

        with reading("run summary"):
            return cls(
                run_dir=value["run_dir"], log_file=value["log_file"], succeeded=value["succeeded"],
                total_seconds=value["total_seconds"], steps=[StepTime(**step) for step in value.get("steps", [])],
                model_name=value["model_name"], registry=value["registry"], error=value.get("error"),
                failed_step=value.get("failed_step"), retrain=record("retrain", RetrainDecision.from_dict),
                data=record("data", DataLineage.from_metadata),
                validation=record("validation", ValidationReport.from_dict),
                leaderboard=record("leaderboard", lambda entries: [nested(LeaderboardEntry, e) for e in entries]),
                candidate=record("candidate", CandidateSummary.from_dict),
                champion=record("champion", lambda c: nested(ChampionSummary, c)),
                gate=record("gate", Decision.from_dict), infra_validation=record("infra_validation", InfraValidation.from_dict),
                registered_version=value.get("registered_version"), report=value.get("report"),
                deploy=record("deploy", DeployResult.from_dict), aliases=value.get("aliases"),
                report_error=value.get("report_error"))


def step_times(outcome: RunOutcome) -> list[StepTime]:
    """Per-step wall time in DAG order; ParallelFor iterations are summed and counted."""
    grouped: dict[str, list] = defaultdict(list)
    for timing in outcome.timings:
        grouped[timing.name].append(timing)
    rows = []
    for name, runs in grouped.items():
        wall = max(t.finished or t.started for t in runs) - min(t.started for t in runs)
        rows.append(StepTime(step=name, tasks=len(runs), seconds=round(wall, 3),
                             status="FAILURE" if any(t.status == "FAILURE" for t in runs) else runs[-1].status))
    return rows


def build_summary(outcome: RunOutcome, registry: Registry, model_name: str) -> RunSummary:
    """Collect what the run decided from its artifacts and the registry."""
    summary = RunSummary(run_dir=str(outcome.run_dir), log_file=str(outcome.log_file), succeeded=outcome.succeeded,
                         total_seconds=round(outcome.total_seconds, 2), steps=step_times(outcome),
                         model_name=model_name, registry=registry.uri)
    if not outcome.succeeded:
        summary.error, summary.failed_step = outcome.error, outcome.failed_task
    pipeline_dir = outcome.pipeline_dir
    if pipeline_dir is None:
        return summary

    def output(task: str, artifact: str) -> dict[str, Any] | None:
        return read_json(find_output(pipeline_dir, task, artifact) or pipeline_dir / "-")

    if retrain := output("retrain-check", "decision"):
        summary.retrain = RetrainDecision.from_dict(retrain)
    ingest = task_outputs(pipeline_dir, "ingest").get("artifacts", {}).get("raw", {}).get("artifacts", [{}])[0]
    if ingest:
        summary.data = DataLineage.from_metadata(ingest.get("metadata", {}))
    if validation := output("validate", "report"):
        summary.validation = ValidationReport.from_dict(validation)
    best = find_output(pipeline_dir, "select", "best")
    if best and (best / SELECTION_FILE).is_file():
        summary.leaderboard = Selection.from_json((best / SELECTION_FILE).read_text()).leaderboard
    if evaluation := output("evaluate", "evaluation"):
        record = Evaluation.from_dict(evaluation)
        summary.candidate = CandidateSummary.of(record.candidate)
        if record.champion is not None:
            summary.champion = ChampionSummary(record.champion.version, record.champion.metrics, record.champion.error)
    if decision := output("gate", "decision"):
        summary.gate = Decision.from_dict(decision)
    if infra := output("infra-validate", "report"):
        summary.infra_validation = InfraValidation.from_dict(infra)
    registered = task_outputs(pipeline_dir, "register").get("parameterValues", {}).get("Output")
    if registered is not None:
        summary.registered_version = int(registered)
    report = find_output(pipeline_dir, "report", "html")
    if report:
        summary.report = str(report)
    if deploy := output("deploy", "result"):
        summary.deploy = DeployResult.from_dict(deploy)
    summary.aliases = registry.aliases(model_name)
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


def render_summary(summary: RunSummary, console: Console) -> None:
    """Print the summary as a few compact tables."""
    steps = Table(title="Steps", show_edge=False, header_style="bold")
    for column in ("step", "tasks", "seconds", "status"):
        steps.add_column(column, justify="right" if column in ("tasks", "seconds") else "left")
    for row in summary.steps:
        style = "red" if row.status == "FAILURE" else None
        steps.add_row(_e(row.step), str(row.tasks), f"{row.seconds:.2f}", _e(row.status), style=style)
    console.print(steps)

    retrain = summary.retrain
    if retrain:
        style, label = ("bold", "Retrain") if retrain.train else ("yellow bold", "Skipped")
        console.print(f"[{style}]{label}[/] (retrain.when {_e(retrain.when)}): {_e(retrain.message)}", soft_wrap=True)
    data = summary.data
    if data:
        window = f", window {_e(data.window[0])} .. {_e(data.window[1])}" if data.window else ""
        console.print(f"[bold]Data[/] {_e(data.source)}: {_rows(data.rows)} rows{window}")
        for note in data.notes or []:
            console.print(f"  [dim]-[/] {_e(note)}", soft_wrap=True)
    validation = summary.validation
    if validation:
        for anomaly in validation.warnings:
            console.print(f"[yellow]warning[/] {_e(anomaly.column)}: {_e(anomaly.check)} "
                          f"(observed {_e(anomaly.observed)}; allowed {_e(anomaly.allowed)})")
        if validation.drift:
            drifted = validation.drifted_columns
            listed = f" ({_e(', '.join(map(str, drifted)))})" if drifted else ""
            console.print(f"[bold]Drift[/] vs production v{validation.reference_version}: "
                          f"{len(drifted)} of {len(validation.drift)} features drifted{listed}")

    candidate = summary.candidate
    if candidate:
        _render_candidate(summary, candidate, console)

    gate = summary.gate
    if gate:
        verdict = "[green]PASSED[/]" if gate.passed else "[red]BLOCKED[/]"
        console.print(f"[bold]Gate[/] {verdict}")
        for reason in gate.reasons:
            console.print(f"  - {_e(reason)}")

    infra = summary.infra_validation
    if infra:
        verdict = "[green]PASSED[/]" if infra.passed else "[red]BLOCKED[/]"
        console.print(f"[bold]Infra-validation[/] {verdict}: {_e(infra.reason)}", soft_wrap=True)
        for warning in infra.warnings:
            console.print(f"[yellow]warning[/] {_e(warning)}", soft_wrap=True)

    if summary.registered_version is not None:
        parts = [f"{_e(name)} -> v{record['version']}" for name, record in sorted((summary.aliases or {}).items())]
        console.print(f"[bold]Registered[/] {_e(summary.model_name)} v{summary.registered_version} "
                      f"in {_e(summary.registry)}; aliases: {', '.join(parts) or 'none'}")
        if summary.deploy and not summary.deploy.promoted:
            console.print(f"[yellow bold]Not promoted:[/] {_e(summary.deploy.detail)}", soft_wrap=True)
    elif summary.succeeded and summary.blocked:
        console.print("Nothing registered; aliases unchanged.")
    if not summary.succeeded:
        step = summary.failed_step
        # Unwrapped: an error message or a path broken across lines cannot be searched or copied.
        console.print(f"[red bold]Run failed[/]{f' in {_e(step)}' if step else ''}: {_e(summary.error)}",
                      soft_wrap=True)
    if summary.report:
        console.print(f"[bold]Report[/] {_e(summary.report)}", soft_wrap=True)
    if summary.report_error:
        console.print(f"[yellow]report not written:[/] {_e(summary.report_error)}", soft_wrap=True)
    console.print(f"[dim]{summary.total_seconds:.1f}s; run directory {_e(summary.run_dir)}; "
                  f"KFP log {_e(summary.log_file)}[/]", soft_wrap=True)


def _render_candidate(summary: RunSummary, candidate: CandidateSummary, console: Console) -> None:
    params = _e(", ".join(f"{k}={v}" for k, v in sorted(candidate.params.items())))
    console.print(f"[bold]Selected[/] {_e(candidate.candidate_id)} ({_e(candidate.family)}; {params}) "
                  f"out of {len(summary.leaderboard or [])} candidates by validation {_e(candidate.selection_metric)}")
    champion = summary.champion
    metrics = Table(title="Test metrics", show_edge=False, header_style="bold")
    metrics.add_column("metric")
    metrics.add_column("challenger", justify="right")
    metrics.add_column(f"champion v{champion.version}" if champion else "champion", justify="right")
    for name in MULTICLASS_METRIC_NAMES if candidate.multiclass else METRIC_NAMES:
        theirs = (champion.metrics or {}).get(name) if champion else None
        metrics.add_row(name, _fmt(candidate.test_metrics.get(name)), _fmt(theirs))
    console.print(metrics)
    if candidate.multiclass:
        per_class = Table(title=f"Per class ({len(candidate.classes or [])} classes, model order)",
                          show_edge=False, header_style="bold")
        for column in ("class", "precision", "recall", "f1", "support"):
            per_class.add_column(column, justify="left" if column == "class" else "right")
        for row in candidate.per_class or []:
            per_class.add_row(_e(row.class_label), _fmt(row.precision), _fmt(row.recall), _fmt(row.f1),
                              str(row.support))
        console.print(per_class)
        if candidate.fairness_skipped:
            console.print(f"[yellow]fairness skipped[/] {_e(candidate.fairness_skipped)}", soft_wrap=True)
    for attribute, measures in candidate.fairness.items():
        console.print(f"[bold]Fairness[/] {_e(attribute)}: disparate impact {_fmt(measures['disparate_impact'])}, "
                      f"equal-opportunity difference {_fmt(measures['equal_opportunity_difference'])}")
    if champion and champion.error:
        console.print(f"[red]champion v{champion.version} not comparable:[/] {_e(champion.error)}")
    elif not champion:
        console.print("No champion yet: only absolute thresholds apply.")
