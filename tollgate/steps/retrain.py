"""Retrain check: the DAG's first step when ``retrain.when`` is ``drift`` or ``new_data``.

* ``drift``: measure the served traffic (the prediction log, from the production version's
  registration to the scheduled time) against the production version's training reference
  with ``tollgate monitor``'s measures; when the log holds no answered rows of that version,
  measure the incoming training data against the same reference (data validation's drift).
  Train only when something crossed a threshold.
* ``new_data``: train only when the window's data fingerprint differs from the one the
  production version was trained on.

With no production version (or one without a reference) there is nothing to compare with,
and the pipeline trains.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tollgate.records import DataSchema, LargestDrift, RetrainDecision, VersionMetadata

if TYPE_CHECKING:
    from tollgate.settings import RetrainSettings


def _largest(drift: list[Any]) -> LargestDrift | None:
    if not drift:
        return None
    top = max(drift, key=lambda d: d.value / d.threshold)
    return LargestDrift(column=top.column, measure=top.measure, value=top.value, threshold=top.threshold)


def _numbers(largest: LargestDrift | None, measured: int, rows: int, basis: str) -> str:
    where = "rows of served traffic" if basis == "traffic" else "rows of new data"
    if largest is None:
        return f"{rows} {where}"
    return (f"largest {largest.column} {largest.measure.replace('_', '-')} {largest.value:.4f} "
            f"<= {largest.threshold:g}; {measured} features, {rows} {where}")


def _ingest(settings: RetrainSettings, data_source: str, scheduled_time: str | None):
    from tollgate.steps.ingest import run_ingest

    return run_ingest(settings.ingest, data_source, scheduled_time or "")


def run_retrain_check(settings: RetrainSettings, registry: Any, model_name: str, data_source: str,
                      scheduled_time: str = "") -> RetrainDecision:
    """Apply ``retrain.when`` (``settings.when``) against the production version of ``model_name`` in ``registry``."""
    when = settings.when
    if when == "always":
        return RetrainDecision(True, when, "retrain.when is always")
    number = registry.alias_version(model_name, "production")
    if number is None:
        return RetrainDecision(True, when, f"no production version of {model_name} yet: training")
    metadata = registry.get_version(model_name, number).record
    if when == "new_data":
        recorded = metadata.lineage.fingerprint
        result = _ingest(settings, data_source, scheduled_time)
        if recorded and recorded == result.fingerprint:
            return RetrainDecision(False, when, f"skipped: no new data since v{number} (fingerprint "
                                   f"{result.fingerprint[:19]}..., {len(result.frame)} rows)", number, "fingerprint",
                                   len(result.frame))
        return RetrainDecision(True, when, f"new data since v{number}: fingerprint {result.fingerprint[:19]}... "
                               f"differs from {str(recorded)[:19]}...", number, "fingerprint", len(result.frame))
    reference = registry.read_data_schema(model_name, number)
    if reference is None:
        return RetrainDecision(True, when, f"v{number} has no data_schema.json to compare with: training", number)
    traffic = _traffic_drift(settings, model_name, number, reference, metadata, scheduled_time)
    if traffic is not None:
        report = traffic
        drift = report.drift + ([report.prediction_drift] if report.prediction_drift else [])
        largest = _largest(drift)
        if report.drifted:
            return RetrainDecision(True, when, f"served traffic drifted since v{number}: " + "; ".join(report.alerts),
                                   number, "traffic", report.rows, report.alerts, largest)
        return RetrainDecision(False, when, f"skipped: no drift since v{number} ("
                               + _numbers(largest, len(drift), report.rows, "traffic") + ")",
                               number, "traffic", report.rows, [], largest)
    from tollgate.steps.validate import feature_drift

    result = _ingest(settings, data_source, scheduled_time)
    drift = feature_drift(result.frame, reference, settings.validation)
    alerts = [f"{d.column}: {d.measure.replace('_', '-')} {d.value:.4f} > {d.threshold:g}" for d in drift if d.drifted]
    largest = _largest(drift)
    if alerts:
        return RetrainDecision(True, when, f"new data drifted from v{number}'s training data: " + "; ".join(alerts),
                               number, "data", len(result.frame), alerts, largest)
    return RetrainDecision(False, when, f"skipped: no drift since v{number} ("
                           + _numbers(largest, len(drift), len(result.frame), "data") + ")",
                           number, "data", len(result.frame), [], largest)


def _traffic_drift(settings: RetrainSettings, model_name: str, number: int, reference: DataSchema,
                   metadata: VersionMetadata, scheduled_time: str):
    """``monitor_traffic`` over the log since v``number`` was registered, or None without logged rows."""
    if not settings.log_uri:
        return None
    from tollgate.serving.predlog import read_log
    from tollgate.steps.monitor import monitor_traffic

    created = metadata.created_at
    since = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    until = datetime.fromisoformat(scheduled_time.replace("Z", "+00:00")) if scheduled_time else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    log = read_log(settings.log_uri, model_name, since, until)
    report = monitor_traffic(log, model_name=model_name, production_version=number, data_schema=reference,
                             metadata=metadata, validation=settings.validation, since=since, until=until)
    return report if report.rows else None
