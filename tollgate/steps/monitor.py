"""Monitor: live traffic (the prediction log) against what the production version was trained on.

The same measures and thresholds as data validation (``steps/drift.py``, ``validation.drift``):
Jensen-Shannon divergence on the reference's numeric bins, L-infinity distance between
category shares. The reference is the production version's ``data_schema.json`` (its
training data) and, for the model's output, the predicted-probability profile recorded
on the test split at registration (``metadata.json`` ``prediction_profile``).

Pure Python, free of KFP: ``tollgate monitor`` and the retrain check both call
:func:`monitor_traffic`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from tollgate.records import DEFAULT_DECISION_THRESHOLD, DataSchema, VersionMetadata
from tollgate.steps.drift import MISSING, FeatureDrift, column_drift, numeric_drift

INPUT_PREFIX = "input."
OUTPUT_PREFIX = "output."
PROBABILITY_COLUMN = OUTPUT_PREFIX + "probability"
CLASS_COLUMN = OUTPUT_PREFIX + "predicted_class"
PREDICTION = "predicted probability"
# Exit code of `tollgate monitor` when something crossed a threshold (0: nothing did; 1: an error).
DRIFT_EXIT_CODE = 3


@dataclass
class MonitorReport:
    """What `tollgate monitor` found in one window of the prediction log."""

    model_name: str
    production_version: int | None
    since: str | None
    until: str | None
    rows: int = 0                                   # answered rows of the production version in the window
    requests: int = 0                               # all logged requests in the window
    versions: list[dict[str, Any]] = field(default_factory=list)
    drift: list[FeatureDrift] = field(default_factory=list)
    prediction_drift: FeatureDrift | None = None
    null_rates: list[dict[str, Any]] = field(default_factory=list)
    unseen_categories: list[dict[str, Any]] = field(default_factory=list)
    realized: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def alerts(self) -> list[str]:
        """One line per threshold crossed."""
        lines = [f"{d.column}: {d.measure.replace('_', '-')} {d.value:.4f} > {d.threshold:g}"
                 for d in self.drift if d.drifted]
        if self.prediction_drift is not None and self.prediction_drift.drifted:
            d = self.prediction_drift
            lines.append(f"{PREDICTION}: jensen-shannon {d.value:.4f} > {d.threshold:g}")
        return lines

    @property
    def drifted(self) -> bool:
        return bool(self.alerts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name, "production_version": self.production_version,
            "since": self.since, "until": self.until, "rows": self.rows, "requests": self.requests,
            "drifted": self.drifted, "alerts": self.alerts, "versions": self.versions,
            "drift": [d.to_dict() for d in self.drift],
            "prediction_drift": self.prediction_drift.to_dict() if self.prediction_drift else None,
            "null_rates": self.null_rates, "unseen_categories": self.unseen_categories,
            "realized": self.realized, "notes": self.notes,
        }


def _percentiles(values: pd.Series) -> dict[str, float | None]:
    if values.empty:
        return {"p50": None, "p90": None, "p99": None}
    q = np.percentile(values.to_numpy(dtype=float), [50, 90, 99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2])}


def version_stats(log: pd.DataFrame) -> list[dict[str, Any]]:
    """Per served version: requests, answered rows, error classes, latency percentiles (per request)."""
    if log.empty:
        return []
    stats = []
    requests = log.drop_duplicates("request_id")
    for version, group in requests.groupby("model_version", sort=True):
        errors = group["error"].dropna().value_counts()
        answered = log[(log["model_version"] == version) & log["error"].isna()]
        stats.append({"version": str(version), "requests": int(len(group)), "rows": int(len(answered)),
                      "errors": {str(k): int(v) for k, v in errors.items()},
                      "latency_ms": _percentiles(group["latency_ms"])})
    return stats


def monitor_traffic(log: pd.DataFrame, *, model_name: str, production_version: int | None,
                    data_schema: DataSchema | None, metadata: VersionMetadata | None, validation: Any,
                    since: datetime | None = None, until: datetime | None = None,
                    labels: pd.DataFrame | None = None,
                    thresholds: Mapping[str, float] | None = None) -> MonitorReport:
    """Compare the answered rows of the production version in ``log`` with its training reference.

    ``validation`` is the ``ValidationConfig`` (its ``drift`` thresholds are used as they are in
    data validation). ``labels`` (``request_id``, ``label``, optional ``row``) adds realized
    metrics per version and day; ``thresholds`` is each logged version's ``decision_threshold``
    (see :func:`realized_metrics`).
    """
    report = MonitorReport(model_name, production_version, since.isoformat() if since else None,
                           until.isoformat() if until else None)
    report.requests = int(log["request_id"].nunique()) if not log.empty else 0
    report.versions = version_stats(log)
    if production_version is None:
        report.notes.append(f"no production version of {model_name}: nothing to compare with")
        return report
    answered = log[(log["model_version"].astype(str) == str(production_version)) & log["error"].isna()] \
        if not log.empty else log
    report.rows = int(len(answered))
    if answered.empty:
        report.notes.append(f"no answered requests of v{production_version} in the window")
    elif data_schema is None:
        report.notes.append(f"v{production_version} has no data_schema.json: input drift cannot be measured")
    else:
        settings = validation.drift
        for column in data_schema.columns:
            name = column.name
            if column.role != "feature" or INPUT_PREFIX + name not in answered.columns:
                continue
            values = answered[INPUT_PREFIX + name]
            current_null = float(values.isna().mean())
            report.null_rates.append({"column": name, "reference": column.null_fraction, "current": current_null})
            drift = column_drift(column, values, settings)
            if drift is not None:
                report.drift.append(drift)
            if column.profile is None and column.categories is not None:  # unseen categories of a text column
                present = values.dropna().astype(str)
                known = {k for k in column.categories if k != MISSING}
                unseen = float((~present.isin(known)).mean()) if len(present) else 0.0
                report.unseen_categories.append({"column": name, "rate": unseen,
                                                 "examples": sorted(set(present[~present.isin(known)]))[:5]})
    profile = metadata.prediction_profile if metadata else None
    if not answered.empty and PROBABILITY_COLUMN not in answered.columns:
        # A multiclass model logs output.probabilities ([n, k] per row): one number per row to
        # profile, and one threshold to realize metrics with, exist only for binary models.
        measured = "output drift and realized metrics are" if labels is not None else "output drift is"
        report.notes.append(f"v{production_version} answers with per-class probabilities (multiclass): {measured} "
                            "measured for binary models only")
    if not answered.empty and PROBABILITY_COLUMN in answered.columns:
        if profile is not None:
            report.prediction_drift = numeric_drift(PREDICTION, profile, answered[PROBABILITY_COLUMN],
                                                    validation.drift.numeric_threshold)
        else:
            report.notes.append(f"v{production_version} recorded no predicted-probability profile on its test split "
                                "(registered before monitoring existed): output drift not measured")
    if labels is not None:
        positive_label = (metadata or VersionMetadata()).binary_labels[1]
        report.realized = realized_metrics(log, labels, positive_label, thresholds)
    return report


def read_labels(path: str) -> pd.DataFrame:
    """A CSV or Parquet file of ``request_id`` and ``label`` (and ``row`` for batched requests)."""
    from tollgate.errors import TollgateError

    try:
        if str(path).endswith(".parquet"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={"request_id": str})
    except (OSError, ValueError) as exc:
        raise TollgateError(f"cannot read labels file {path}: {exc}") from None
    missing = [c for c in ("request_id", "label") if c not in frame.columns]
    if missing:
        raise TollgateError(f"labels file {path} lacks column(s) {', '.join(missing)}; it needs request_id and label "
                            "(and row for requests of several rows)")
    return frame


def realized_metrics(log: pd.DataFrame, labels: pd.DataFrame, positive_label: Any,
                     thresholds: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Join late labels on (request_id, row) and compute the test-set metrics per version and day
    (a label is positive when it is ``positive_label``, compared as text).

    Accuracy, precision, recall and F1 count the classes the server answered (each version
    decided with its own ``decision_threshold``). Rows logged without them (by a server from
    before the log had ``output.predicted_class``) are decided by that version's threshold in
    ``thresholds`` (version number as text -> its input schema's ``decision_threshold``), the
    rule the server answered with; each entry says which rule it used (``decided_by``)."""
    from tollgate.steps.evaluate import classification_metrics

    answered = log[log["error"].isna()] if not log.empty else log
    if answered.empty or PROBABILITY_COLUMN not in answered.columns:
        return []
    labels = labels.copy()
    if "row" not in labels.columns:
        labels["row"] = 0
    labels["request_id"] = labels["request_id"].astype(str)
    labels["row"] = labels["row"].astype(int)
    joined = answered.merge(labels[["request_id", "row", "label"]], on=["request_id", "row"], how="inner")
    positive = str(positive_label)
    results: list[dict[str, Any]] = []
    if joined.empty:
        return results
    joined = joined.assign(day=joined["time"].dt.strftime("%Y-%m-%d"))
    for (version, day), group in joined.groupby(["model_version", "day"], sort=True):
        text = group["label"].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
        y_true = (text == positive).astype(int).to_numpy()
        proba = group[PROBABILITY_COLUMN].astype(float).to_numpy()
        served = group[CLASS_COLUMN] if CLASS_COLUMN in group.columns else None
        decisions = None
        threshold = (thresholds or {}).get(str(version), DEFAULT_DECISION_THRESHOLD)
        if served is not None and served.notna().all():
            decisions = (served.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
                         == positive).to_numpy()
            decided_by = "the classes the server answered"
        elif thresholds is not None and str(version) in thresholds:
            decided_by = f"v{version}'s decision_threshold {threshold:g}"
        else:
            decided_by = f"the default decision_threshold {threshold:g} (v{version}'s input schema was not read)"
        entry: dict[str, Any] = {"version": str(version), "day": day, "labelled_rows": int(len(group)),
                                 "decided_by": decided_by}
        if len(set(y_true)) == 2:
            entry["metrics"] = classification_metrics(y_true, proba, threshold, decisions=decisions)
        else:
            entry["metrics"] = {}
            entry["note"] = "one class only among the labelled rows: no AUC"
        results.append(entry)
    return results


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def render_html(report: MonitorReport) -> str:
    """A self-contained HTML page (plots embedded as PNG data URIs, no scripts), rendered from the
    ``monitor/page.html.j2`` template with autoescape: every value from the log is shown as text."""
    from tollgate.steps.report import _bars, _drift, _img, render_page

    measured = report.drift + ([report.prediction_drift] if report.prediction_drift else [])
    prediction_images = []
    if report.prediction_drift is not None:
        d = report.prediction_drift
        prediction_images = [
            _img(_bars(d.labels, d.reference, f"{PREDICTION}: share per bin (test split)", "share of rows"), "reference"),
            _img(_bars(d.labels, d.current, f"{PREDICTION}: share per bin (live)", "share of rows"), "live")]
    context = {
        "title": f"Tollgate monitor: {report.model_name}", "alerts": report.alerts, "notes": report.notes,
        "summary_row": [_fmt(report.model_name), _fmt(report.production_version),
                        f"{report.since or 'start of log'} .. {report.until or 'now'}", _fmt(report.requests),
                        _fmt(report.rows)],
        "version_rows": [[_fmt(v["version"]), _fmt(v["requests"]), _fmt(v["rows"]),
                          ", ".join(f"{k}: {n}" for k, n in v["errors"].items()) or "none",
                          _fmt(v["latency_ms"]["p50"]), _fmt(v["latency_ms"]["p90"]), _fmt(v["latency_ms"]["p99"])]
                         for v in report.versions],
        "validation": {"drift": measured}, "drift": _drift(measured), "prediction_images": prediction_images,
        "null_rate_rows": [[_fmt(r["column"]), _fmt(r["reference"]), _fmt(r["current"])] for r in report.null_rates],
        "unseen_rows": [[_fmt(u["column"]), _fmt(u["rate"]), ", ".join(u["examples"])]
                        for u in report.unseen_categories],
        "realized_rows": [[_fmt(r["version"]), _fmt(r["day"]), _fmt(r["labelled_rows"]),
                           _fmt(r["metrics"].get("roc_auc")), _fmt(r["metrics"].get("accuracy")),
                           _fmt(r["metrics"].get("log_loss")), _fmt(r.get("decided_by"))] for r in report.realized],
    }
    return render_page("monitor/page.html.j2", context)
