"""``tollgate monitor``: did live traffic drift from what the production version was trained on?

Exit codes: 0 nothing crossed a threshold, 3 something did (``DRIFT_EXIT_CODE``), 1 an error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

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
from tollgate.errors import TollgateError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``24h``, ``7d``... as a timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise TollgateError(f"--last {text!r} is not a duration; use a number and a unit s, m, h, d or w (e.g. 24h)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_time(text: str, flag: str) -> datetime:
    """An ISO date or date-time (UTC when no zone is given)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TollgateError(f"{flag} {text!r} is not an ISO date or date-time (e.g. 2026-11-21 or "
                            "2026-11-21T08:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window(since: str | None, until: str | None, last: str | None,
           now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """The [since, until) window from the flags; ``--last`` counts back from ``--until`` (or now)."""
    if last and since:
        raise TollgateError("give either --since or --last, not both")
    end = parse_time(until, "--until") if until else None
    start = parse_time(since, "--since") if since else None
    if last:
        start = (end or now or datetime.now(UTC)) - parse_duration(last)
    if start and end and start >= end:
        raise TollgateError("--since must be before --until")
    return start, end


def run_monitor(cfg, since, until, labels_path: str | None):
    """Read the log and the production version's references; returns a ``MonitorReport``."""
    from tollgate.registry import open_registry
    from tollgate.serving.predlog import read_log
    from tollgate.steps.monitor import monitor_traffic, read_labels

    if not cfg.monitoring.log_uri:
        raise TollgateError("no prediction log to read: give --log-uri or set monitoring.log_uri")
    registry = open_registry(cfg.registry.uri)
    number = registry.alias_version(cfg.model_name, "production")
    data_schema = metadata = None
    if number is not None:
        data_schema = registry.read_data_schema(cfg.model_name, number)
        metadata = registry.get_version(cfg.model_name, number).record
    labels = read_labels(labels_path) if labels_path else None
    log = read_log(cfg.monitoring.log_uri, cfg.model_name, since, until)
    thresholds = logged_thresholds(registry, cfg.model_name, log) if labels is not None else None
    return monitor_traffic(log, model_name=cfg.model_name, production_version=number, data_schema=data_schema,
                           metadata=metadata, validation=cfg.validation, since=since, until=until, labels=labels,
                           thresholds=thresholds)


def logged_thresholds(registry, model_name: str, log) -> dict[str, float]:
    """Each version the log answered with -> the ``decision_threshold`` its input schema records
    (digest-checked); a version no longer in the registry is left out (realized metrics say so)."""
    from tollgate.records import decision_threshold
    from tollgate.registry import SCHEMA_FILE

    thresholds = {}
    for version in sorted({str(v) for v in log["model_version"].dropna()} if not log.empty else set()):
        if version.isdigit() and registry.has_version(model_name, int(version)):
            thresholds[version] = decision_threshold(registry.read_version_json(model_name, int(version), SCHEMA_FILE))
    return thresholds


@guarded
def monitor(
    since: str | None = typer.Option(None, "--since", help="Start of the window (ISO date or date-time, UTC)."),
    until: str | None = typer.Option(None, "--until", help="End of the window (exclusive). Default: now."),
    last: str | None = typer.Option(None, "--last", help="Window length back from --until or now, e.g. 24h, 7d."),
    labels: Path | None = typer.Option(None, "--labels", help="CSV or Parquet of request_id, label (and row for "
                                          "batched requests): adds realized metrics per version and day."),
    html: Path | None = typer.Option(None, "--html", help="Where to write the HTML report. Default: "
                                        "monitor-<model>.html in the current directory."),
    log_uri: str | None = typer.Option(None, "--log-uri", help="Prediction log: directory or s3://bucket/prefix. "
                                          "Default: monitoring.log_uri."),
    config: Path | None = ConfigOption,
    registry: str | None = RegistryOption,
    model_name: str | None = ModelNameOption,
    as_json: bool = JsonOption,
) -> None:
    """Compare live traffic with the production version's training data; exit 3 when something drifted."""
    from tollgate.steps.monitor import DRIFT_EXIT_CODE, render_html

    cfg = load(config, registry__uri=registry, model_name=model_name, monitoring__log_uri=log_uri)
    start, end = window(since, until, last)
    report = run_monitor(cfg, start, end, str(labels) if labels else None)
    path = html or Path(f"monitor-{cfg.model_name}.html")
    path.write_text(render_html(report))
    if as_json:
        emit_json({**report.to_dict(), "report": str(path)})
    else:
        _print(report, path)
    if report.drifted:
        raise typer.Exit(DRIFT_EXIT_CODE)


def _print(report, path: Path) -> None:
    console.print(f"[bold]{escape(report.model_name)}[/] production v{report.production_version}: "
                  f"{report.requests} requests, {report.rows} rows compared", highlight=False)
    for note in report.notes:
        console.print(f"  note: {escape(note)}", highlight=False)
    if report.versions:
        table = Table("version", "requests", "rows", "refused", "p50 ms", "p99 ms", title="Traffic")
        for v in report.versions:
            latency = v["latency_ms"]
            table.add_row(escape(v["version"]), str(v["requests"]), str(v["rows"]),
                          escape(", ".join(f"{k} {n}" for k, n in v["errors"].items()) or "-"),
                          f"{latency['p50']:.2f}" if latency["p50"] is not None else "-",
                          f"{latency['p99']:.2f}" if latency["p99"] is not None else "-")
        console.print(table)
    measured = report.drift + ([report.prediction_drift] if report.prediction_drift else [])
    if measured:
        table = Table("feature", "measure", "distance", "threshold", "status", title="Drift")
        for d in sorted(measured, key=lambda d: d.value / d.threshold, reverse=True):
            table.add_row(escape(d.column), d.measure.replace("_", "-"), f"{d.value:.4f}", f"{d.threshold:g}",
                          "[red]drifted[/]" if d.drifted else "ok")
        console.print(table)
    for entry in report.realized:
        auc = entry["metrics"].get("roc_auc")
        console.print(f"  realized v{escape(entry['version'])} {entry['day']}: {entry['labelled_rows']} labelled rows, "
                      f"ROC AUC {auc:.4f}" if auc is not None else
                      f"  realized v{escape(entry['version'])} {entry['day']}: {entry['labelled_rows']} labelled rows",
                      highlight=False)
    if report.drifted:
        console.print("[red bold]drift:[/] " + escape("; ".join(report.alerts)), highlight=False, soft_wrap=True)
    else:
        console.print("[green]nothing crossed a threshold[/]", highlight=False)
    console.print(f"report {escape(str(path))}", highlight=False, soft_wrap=True)
