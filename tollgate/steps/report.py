"""The run report: one self-contained HTML page with every plot embedded as a PNG data URI.

It is built from the run's own artifacts — the validation report, the evaluation record
and the gate decision — so it can be rendered inside the DAG (a KFP HTML artifact) and,
for a run that stopped early, from whatever artifacts the run left behind. Any part
that is missing renders as a short note saying why, never as an error.
"""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tollgate.records import DEFAULT_DECISION_THRESHOLD

if TYPE_CHECKING:
    import jinja2
    from matplotlib.figure import Figure

    from tollgate.records import (
        ClassPrecisionRecallCurve,
        DataLineage,
        Decision,
        Evaluation,
        FeatureDrift,
        GroupRates,
        ImportanceBounds,
        ValidationReport,
    )

# matplotlib and Jinja2 are imported where a page is drawn, not here: `tollgate run` imports this
# module for every run, and most runs only copy the report task's page and print text_summary. Figures render to PNG through their own canvas (matplotlib.figure
# .Figure): no pyplot, no global backend choice, nothing done at import time.

SECTIONS = (("summary", "Summary"), ("validation", "Data validation"), ("drift", "Drift per feature"),
            ("performance", "Model performance"), ("importance", "Feature importance"),
            ("fairness", "Fairness per group"), ("gate", "Gate rules"))


@dataclass
class ReportInputs:
    """Everything the report shows; each part may be None when the run stopped before producing it."""

    model_name: str
    run_id: str = ""
    data: DataLineage | None = None           # ingest's lineage
    validation: ValidationReport | None = None
    evaluation: Evaluation | None = None
    decision: Decision | None = None
    registered_version: int | None = None
    notes: list[str] = field(default_factory=list)
    failure: str | None = None  # why the run stopped, when it failed (an ingest error, say)


# ---------------------------------------------------------------------------- plots

def _literal(text: Any) -> str:
    """Text matplotlib draws as written: an unescaped ``$`` starts mathtext, and a column named
    ``price $`` or ``$x$`` would be typeset or fail to draw."""
    return str(text).replace("$", r"\$")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(figure: Figure, alt: str) -> dict[str, str]:
    """An image for the template: a PNG data URI and its alt text (escaped there)."""
    return {"src": _png(figure), "alt": alt}


def _curve(x: list[float], y: list[float], title: str, xlabel: str, ylabel: str, diagonal: bool) -> Figure:
    figure = _figure(5, 4)
    axes = figure.add_subplot()
    axes.plot(x, y, color="#1f5fa8", lw=2, marker="o" if len(x) <= 20 else None, ms=4)
    if diagonal:
        axes.plot([0, 1], [0, 1], ls="--", color="#999", lw=1)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=.3)
    return figure


def _confusion(matrix: list[list[int]], labels: list[str] | None = None,
               threshold: float = DEFAULT_DECISION_THRESHOLD) -> Figure:
    if labels is not None:
        return _confusion_k(matrix, labels)
    figure = _figure(4.2, 3.8)
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axes.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    axes.set(title=f"Confusion matrix (threshold {threshold:g})", xlabel="predicted", ylabel="actual",
             xticks=[0, 1], yticks=[0, 1], xticklabels=["negative", "positive"], yticklabels=["negative", "positive"])
    return figure


def _confusion_k(matrix: list[list[int]], labels: list[str]) -> Figure:
    """A k x k confusion matrix, rows actual and columns predicted, in the model's class order."""
    size = max(4.2, 0.7 * len(labels) + 2)
    figure = _figure(size, size * 0.9)
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axes.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    ticks = list(range(len(labels)))
    axes.set(title="Confusion matrix (argmax)", xlabel="predicted", ylabel="actual", xticks=ticks, yticks=ticks)
    axes.set_xticklabels([_literal(label) for label in labels], rotation=30, ha="right")
    axes.set_yticklabels([_literal(label) for label in labels])
    return figure


def _pr_per_class(curves: list[ClassPrecisionRecallCurve]) -> Figure:
    """One-vs-rest precision-recall curve of every class on one plot."""
    figure = _figure(5, 4)
    axes = figure.add_subplot()
    for curve in curves:
        if curve.recall:
            axes.plot(curve.recall, curve.precision, lw=2,
                      label=_literal(f"{curve.class_label} (AP {curve.average_precision or 0.0:.3f})"))
    axes.set(title="Precision-recall per class (one-vs-rest)", xlabel="recall", ylabel="precision",
             xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=.3)
    axes.legend(loc="lower left", fontsize="small")
    return figure


def _bars(labels: list[str], values: list[float], title: str, xlabel: str, colors: list[str] | None = None,
          limit: float | None = None) -> Figure:
    figure = _figure(6, max(2.2, 0.32 * len(labels) + 1))
    axes = figure.add_subplot()
    positions = range(len(labels))
    axes.barh(list(positions), values, color=colors or "#1f5fa8")
    axes.set_yticks(list(positions), [_literal(label) for label in labels])
    axes.invert_yaxis()
    if limit is not None:
        axes.axvline(limit, color="#b3261e", ls="--", lw=1, label=f"threshold {limit:g}")
        axes.legend(loc="lower right")
    axes.set(title=title, xlabel=xlabel)
    axes.grid(axis="x", alpha=.3)
    return figure


def _group_rates(attribute: str, groups: list[GroupRates]) -> Figure:
    figure = _figure(6, 3.6)
    axes = figure.add_subplot()
    names = [_literal(g.group) for g in groups]
    width = 0.27
    for offset, (key, label, color) in enumerate((("selection_rate", "selection rate", "#1f5fa8"),
                                                  ("tpr", "TPR", "#17702f"), ("fpr", "FPR", "#b3261e"))):
        values = [float(getattr(g, key)) if getattr(g, key) is not None else 0.0 for g in groups]
        axes.bar([i + (offset - 1) * width for i in range(len(names))], values, width, label=label, color=color)
    axes.set_xticks(range(len(names)), names)
    axes.set(title=_literal(f"{attribute}: rates per group"), ylim=(0, 1))
    axes.legend()
    axes.grid(axis="y", alpha=.3)
    return figure


# ---------------------------------------------------------------------------- the page

def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else _text(value)


def _verdict(passed: bool, yes: str = "pass", no: str = "fail") -> dict[str, Any]:
    """A table cell the template renders as a coloured pass/fail span."""
    return {"verdict": bool(passed), "yes": yes, "no": no}


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates shipped in ``tollgate/templates`` (package data), loaded on first use.

    Autoescape is on for every template: each value a run produces (column names, candidate ids,
    reasons, the model name) is text, never markup, and a ``{{ ... }}`` inside one is never
    evaluated (values are passed to templates, not rendered as templates).
    """
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("tollgate", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(num=_num, dash=_text)
    return environment


def _validation_rows(validation: ValidationReport | None) -> list[list[Any]]:
    return [[_text(a.column), _text(a.check), _text(a.observed), _text(a.allowed),
             {"severity": "blocking" if a.blocking else "warning"}]
            for a in (validation.anomalies if validation else [])]


def _drift(drift: list[FeatureDrift]) -> dict[str, Any] | None:
    """The drift section (validation's features, or the monitor's live traffic): a chart and a table."""
    if not drift:
        return None
    ordered = sorted(drift, key=lambda d: d.value / d.threshold, reverse=True)
    figure = _bars([f"{d.column} ({'JS' if d.measure == 'jensen_shannon' else 'L∞'})" for d in ordered],
                   [d.value / d.threshold for d in ordered], "Drift / threshold per feature",
                   "distance as a multiple of its threshold (>1 = drifted)",
                   colors=["#b3261e" if d.drifted else "#1f5fa8" for d in ordered], limit=1.0)
    rows = [[_text(d.column), _text(d.measure.replace("_", "-")), _num(d.value), _num(d.threshold),
             _verdict(not d.drifted, "ok", "drifted")] for d in ordered]
    return {"images": [_img(figure, "drift per feature")], "rows": rows}


def _performance(evaluation: Evaluation | None) -> dict[str, Any] | None:
    from tollgate.metrics import METRIC_NAMES, MULTICLASS_METRIC_NAMES

    if evaluation is None:
        return None
    candidate, champion = evaluation.candidate, evaluation.champion
    champion_metrics = (champion.metrics if champion else None) or {}
    view: dict[str, Any] = {
        "candidate": candidate, "champion_label": f"champion v{champion.version}" if champion else "champion",
        "champion_error": champion.error if champion else None, "multiclass": candidate.multiclass, "images": []}
    view["metric_rows"] = [[name, _num(candidate.metrics.get(name)), _num(champion_metrics.get(name))]
                           for name in (MULTICLASS_METRIC_NAMES if candidate.multiclass else METRIC_NAMES)
                           if name in candidate.metrics]
    images = view["images"]
    matrix = candidate.confusion_matrix
    if candidate.multiclass:
        classes = [str(c) for c in candidate.classes or []]
        view["classes"] = classes
        view["per_class_rows"] = [[_text(r.class_label), _num(r.precision), _num(r.recall), _num(r.f1),
                                   _text(r.support), _num(r.roc_auc_ovr)]
                                  for r in candidate.per_class or []]
        if matrix:
            images.append(_img(_confusion(matrix, classes), "confusion matrix"))
        if candidate.pr_per_class:
            images.append(_img(_pr_per_class(candidate.pr_per_class), "precision-recall per class"))
        view["confusion_rows"] = ([[c, *(_text(v) for v in row)] for c, row in zip(classes, matrix, strict=True)]
                                  if matrix else [])
        return view
    if candidate.roc:
        images.append(_img(_curve(candidate.roc.fpr, candidate.roc.tpr, "ROC curve",
                                  "false positive rate", "true positive rate", True), "ROC curve"))
    if candidate.pr:
        images.append(_img(_curve(candidate.pr.recall, candidate.pr.precision, "Precision-recall curve",
                                  "recall", "precision", False), "precision-recall curve"))
    if candidate.calibration:
        images.append(_img(_curve(candidate.calibration.predicted, candidate.calibration.observed,
                                  "Calibration curve", "mean predicted probability", "observed positive rate", True),
                           "calibration curve"))
    if matrix:
        images.append(_img(_confusion(matrix, threshold=candidate.decision_threshold), "confusion matrix"))
    return view


def _importance(evaluation: Evaluation | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    candidate = evaluation.candidate
    importance, bounds = candidate.importance, candidate.importance_bounds
    if not importance and not bounds:
        return None
    measure = "macro one-vs-rest ROC AUC" if candidate.multiclass else "ROC AUC"
    view: dict[str, Any] = {"bounds": bounds, "measure": measure, "rows": [], "images": []}
    if importance:
        figure = _bars([i.feature for i in importance], [i.importance for i in importance],
                       "Permutation importance (top features)", f"drop in test {measure} when shuffled")
        view["images"].append(_img(figure, "feature importance"))
        view["rows"] = [[_text(i.feature), _num(i.importance), _num(i.std)] for i in importance]
    return view


def _fairness(evaluation: Evaluation | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    candidate = evaluation.candidate
    attributes = []
    for attribute, record in (candidate.fairness or {}).items():
        rows = [[_text(g.group), _text(g.count), _text(g.positives), _num(g.selection_rate), _num(g.tpr), _num(g.fpr),
                 _num(g.selection_ratio_to_highest), "yes" if g.bounded else "no"] for g in record.groups]
        attributes.append({"name": attribute, "record": record, "rows": rows,
                           "images": [_img(_group_rates(attribute, record.groups), f"fairness {attribute}")]})
    return {"attributes": attributes, "skipped": candidate.fairness_skipped}


def _gate_rows(decision: Decision | None) -> list[list[Any]]:
    return [[_text(r.name), _num(r.observed), _text(r.allowed), _verdict(r.passed), _text(r.detail)]
            for r in (decision.rules if decision else [])]


def render_report(inputs: ReportInputs) -> str:
    """The whole report as one HTML document (no external files, scripts or fonts)."""
    validation = inputs.validation
    anomalies = validation.anomalies if validation else []
    blocking = sum(1 for a in anomalies if a.blocking)
    context = {
        "title": f"Tollgate report: {inputs.model_name}", "sections": SECTIONS,
        "model_name": inputs.model_name, "run_id": inputs.run_id, "data": inputs.data or {},
        "failure": inputs.failure, "notes": inputs.notes, "registered_version": inputs.registered_version,
        "validation": validation, "decision": inputs.decision,
        "anomaly_counts": {"blocking": blocking, "warnings": len(anomalies) - blocking},
        "validation_rows": _validation_rows(validation),
        "drift": _drift(validation.drift if validation else []),
        "performance": _performance(inputs.evaluation),
        "importance": _importance(inputs.evaluation),
        "fairness": _fairness(inputs.evaluation),
        "gate_rows": _gate_rows(inputs.decision),
    }
    return render_page("report/page.html.j2", context)


def render_page(template: str, context: dict[str, Any]) -> str:
    """Render one of the templates shipped in ``tollgate/templates`` (the run report, the monitor's)."""
    return _environment().get_template(template).render(context)


def text_summary(inputs: ReportInputs) -> list[str]:
    """A few plain lines for the terminal: validation, drift, metrics, fairness, gate."""
    lines = [f"run failed: {inputs.failure}"] if inputs.failure else []
    validation = inputs.validation
    if validation is not None:
        blocking = [a for a in validation.anomalies if a.blocking]
        lines.append(f"validation: {'passed' if validation.passed else 'FAILED'} "
                     f"({len(blocking)} blocking, {len(validation.warnings)} warnings)"
                     + (f"; {validation.note}" if validation.note else ""))
        lines.extend(f"  {'blocking' if a.blocking else 'warning'}: {a.column}: {a.check} "
                     f"(observed {a.observed}; allowed {a.allowed})" for a in validation.anomalies)
        drifted = validation.drifted_columns
        if validation.drift:
            lines.append(f"drift: {len(drifted)} of {len(validation.drift)} features drifted"
                         + (f" ({', '.join(drifted)})" if drifted else ""))
    if inputs.evaluation is not None:
        candidate, champion = inputs.evaluation.candidate, inputs.evaluation.champion
        metrics, champion_metrics = candidate.metrics, champion.metrics if champion else None
        headline = candidate.headline_metric
        against = (f"; champion v{champion.version} {headline} {champion_metrics[headline]:.4f}"
                   if champion and champion_metrics else "")
        if candidate.multiclass:
            lines.append(f"candidate {candidate.candidate_id} ({len(candidate.classes or [])} classes): "
                         f"roc_auc_ovr_macro {metrics['roc_auc_ovr_macro']:.4f}, f1_macro {metrics['f1_macro']:.4f}, "
                         f"accuracy {metrics['accuracy']:.4f}{against}")
            if candidate.fairness_skipped:
                lines.append(f"fairness skipped: {candidate.fairness_skipped}")
        else:
            lines.append(f"candidate {candidate.candidate_id}: roc_auc {metrics['roc_auc']:.4f}, "
                         f"pr_auc {metrics['pr_auc']:.4f}{against}")
        bounds = candidate.importance_bounds
        if bounds and (bounds.selection != "all" or bounds.budget_hit or bounds.rows_sampled < bounds.rows_total):
            lines.append(importance_bounds_text(bounds))
        for attribute, record in (candidate.fairness or {}).items():
            lines.append(f"fairness {attribute}: disparate impact {_num(record.disparate_impact)}, "
                         f"equal-opportunity difference {_num(record.equal_opportunity_difference)}")
    if inputs.decision is not None:
        lines.append(f"gate: {'PASSED' if inputs.decision.passed else 'BLOCKED'}")
        lines.extend(f"  {'pass' if r.passed else 'FAIL'}: {r.detail}" for r in inputs.decision.rules)
    if inputs.registered_version is not None:
        lines.append(f"registered: v{inputs.registered_version}")
    return lines


def run_report(model_name: str, run_id: str, data: DataLineage | None, validation: ValidationReport,
               evaluation: Evaluation, decision: Decision) -> str:
    """The report as the DAG renders it, from the run's typed records."""
    return render_report(ReportInputs(model_name=model_name, run_id=run_id, data=data, validation=validation,
                                      evaluation=evaluation, decision=decision))


def kfp_metadata(validation: ValidationReport, decision: Decision) -> dict[str, Any]:
    """The HTML report's metadata in KFP: the gate's verdict and how many anomalies validation found."""
    return {"gate": decision.outcome, "anomalies": len(validation.anomalies)}


def importance_bounds_text(bounds: ImportanceBounds) -> str:
    """One line saying how far permutation importance went (see ``evaluate.top_feature_importance``)."""
    text = (f"importance: {bounds.features_permuted} of {bounds.features_total} columns permuted"
            + (f" (at most {bounds.max_features}: those the predictions vary with most)"
               if bounds.selection == "screened" else "")
            + f", on {bounds.rows_sampled} of {bounds.rows_total} test rows")
    if bounds.budget_hit:
        text += f"; time budget of {bounds.time_budget_seconds:g} s hit (importance.time_budget_seconds)"
    return text
