"""The run report: one self-contained HTML page with every plot embedded as a PNG data URI.

It is built from the run's own artifacts — the validation report, the evaluation record
and the gate decision — so it can be rendered inside the DAG (a KFP HTML artifact) and,
for a run that stopped early, from whatever artifacts the run left behind. Any part
that is missing renders as a short note saying why, never as an error.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# Figure objects render to PNG through their own canvas: no pyplot, no global backend choice,
# nothing done at import time.
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from tollgate.records import Decision, Evaluation, ValidationReport

SECTIONS = (("summary", "Summary"), ("validation", "Data validation"), ("drift", "Drift per feature"),
            ("performance", "Model performance"), ("importance", "Feature importance"),
            ("fairness", "Fairness per group"), ("gate", "Gate rules"))
METRIC_ORDER = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "log_loss", "brier",
                # multiclass metrics (a binary evaluation has none of these)
                "f1_macro", "f1_weighted", "roc_auc_ovr_macro", "roc_auc_ovr_weighted", "precision_macro",
                "recall_macro")

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
th{background:#f5f5f5}.pass{color:#17702f;font-weight:600}.fail{color:#b3261e;font-weight:600}
.warn{color:#8a5a00;font-weight:600}.note{color:#555;font-style:italic}.plots{display:flex;flex-wrap:wrap;gap:1rem}
.plots img{max-width:520px;border:1px solid #eee}.verdict{font-size:1.3rem}
"""


@dataclass
class ReportInputs:
    """Everything the report shows; each part may be None when the run stopped before producing it."""

    model_name: str
    run_id: str = ""
    data: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    registered_version: int | None = None
    notes: list[str] = field(default_factory=list)
    failure: str | None = None  # why the run stopped, when it failed (an ingest error, say)


# ---------------------------------------------------------------------------- plots

def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(figure: Figure, alt: str) -> str:
    return f'<img src="{_png(figure)}" alt="{html.escape(alt)}">'


def _curve(x: list[float], y: list[float], title: str, xlabel: str, ylabel: str, diagonal: bool) -> Figure:
    figure = Figure(figsize=(5, 4))
    axes = figure.add_subplot()
    axes.plot(x, y, color="#1f5fa8", lw=2, marker="o" if len(x) <= 20 else None, ms=4)
    if diagonal:
        axes.plot([0, 1], [0, 1], ls="--", color="#999", lw=1)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=.3)
    return figure


def _confusion(matrix: list[list[int]], labels: list[str] | None = None) -> Figure:
    if labels is not None:
        return _confusion_k(matrix, labels)
    figure = Figure(figsize=(4.2, 3.8))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axes.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    axes.set(title="Confusion matrix (threshold 0.5)", xlabel="predicted", ylabel="actual",
             xticks=[0, 1], yticks=[0, 1], xticklabels=["negative", "positive"], yticklabels=["negative", "positive"])
    return figure


def _confusion_k(matrix: list[list[int]], labels: list[str]) -> Figure:
    """A k x k confusion matrix, rows actual and columns predicted, in the model's class order."""
    size = max(4.2, 0.7 * len(labels) + 2)
    figure = Figure(figsize=(size, size * 0.9))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axes.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    ticks = list(range(len(labels)))
    axes.set(title="Confusion matrix (argmax)", xlabel="predicted", ylabel="actual", xticks=ticks, yticks=ticks)
    axes.set_xticklabels(labels, rotation=30, ha="right")
    axes.set_yticklabels(labels)
    return figure


def _pr_per_class(curves: list[dict[str, Any]]) -> Figure:
    """One-vs-rest precision-recall curve of every class on one plot."""
    figure = Figure(figsize=(5, 4))
    axes = figure.add_subplot()
    for curve in curves:
        if curve["recall"]:
            axes.plot(curve["recall"], curve["precision"], lw=2,
                      label=f"{curve['class']} (AP {curve.get('average_precision', 0.0):.3f})")
    axes.set(title="Precision-recall per class (one-vs-rest)", xlabel="recall", ylabel="precision",
             xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=.3)
    axes.legend(loc="lower left", fontsize="small")
    return figure


def _bars(labels: list[str], values: list[float], title: str, xlabel: str, colors: list[str] | None = None,
          limit: float | None = None) -> Figure:
    figure = Figure(figsize=(6, max(2.2, 0.32 * len(labels) + 1)))
    axes = figure.add_subplot()
    positions = range(len(labels))
    axes.barh(list(positions), values, color=colors or "#1f5fa8")
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    if limit is not None:
        axes.axvline(limit, color="#b3261e", ls="--", lw=1, label=f"threshold {limit:g}")
        axes.legend(loc="lower right")
    axes.set(title=title, xlabel=xlabel)
    axes.grid(axis="x", alpha=.3)
    return figure


def _group_rates(attribute: str, groups: list[dict[str, Any]]) -> Figure:
    figure = Figure(figsize=(6, 3.6))
    axes = figure.add_subplot()
    names = [g["group"] for g in groups]
    width = 0.27
    for offset, (key, label, color) in enumerate((("selection_rate", "selection rate", "#1f5fa8"),
                                                  ("tpr", "TPR", "#17702f"), ("fpr", "FPR", "#b3261e"))):
        values = [float(g[key]) if g.get(key) is not None else 0.0 for g in groups]
        axes.bar([i + (offset - 1) * width for i in range(len(names))], values, width, label=label, color=color)
    axes.set_xticks(range(len(names)), names)
    axes.set(title=f"{attribute}: rates per group", ylim=(0, 1))
    axes.legend()
    axes.grid(axis="y", alpha=.3)
    return figure


# ---------------------------------------------------------------------------- html pieces

def _esc(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else _esc(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """``rows`` cells are already HTML (escaped by the caller)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _verdict(passed: bool, yes: str = "pass", no: str = "fail") -> str:
    return f'<span class="{"pass" if passed else "fail"}">{yes if passed else no}</span>'


def _summary_section(inputs: ReportInputs) -> str:
    parts = [f"<p>Model <b>{_esc(inputs.model_name)}</b>; run {_esc(inputs.run_id or 'local')}</p>"]
    data = inputs.data or {}
    if data:
        parts.append(f"<p>Data {_esc(data.get('source'))}: {_esc(data.get('rows'))} rows"
                     + (f", window {_esc(data['window'][0])} .. {_esc(data['window'][1])}" if data.get("window") else "")
                     + "</p>")
    validation, decision = inputs.validation, inputs.decision
    if validation is not None:
        warnings = sum(1 for a in validation.get("anomalies", []) if not a.get("blocking"))
        blocking = sum(1 for a in validation.get("anomalies", []) if a.get("blocking"))
        parts.append(f"<p>Validation: {_verdict(validation.get('passed', False), 'passed', 'failed')} "
                     f"({blocking} blocking, {warnings} warnings)</p>")
    if decision is not None:
        parts.append(f'<p class="verdict">Gate: {_verdict(decision["passed"], "PASSED", "BLOCKED")}</p>')
        parts.append("<ul>" + "".join(f"<li>{_esc(r)}</li>" for r in decision.get("reasons", [])) + "</ul>")
    elif validation is not None and not validation.get("passed", True):
        parts.append('<p class="verdict">Gate: <span class="fail">not reached</span> — validation blocked the run; '
                     "nothing was trained or registered.</p>")
    if inputs.registered_version is not None:
        parts.append(f"<p>Registered as v{inputs.registered_version}.</p>")
    parts.extend(_note(n) for n in inputs.notes)
    if inputs.failure:
        parts.insert(0, f'<p class="verdict"><span class="fail">Run failed:</span> {_esc(inputs.failure)}</p>')
    return "".join(parts)


def _validation_section(validation: dict[str, Any] | None) -> str:
    if validation is None:
        return _note("No validation report: the run stopped before the validate step finished.")
    parts = [_note(validation["note"])] if validation.get("note") else []
    anomalies = validation.get("anomalies", [])
    if not anomalies:
        return "".join(parts) + "<p>No anomalies.</p>"
    rows = [[_esc(a["column"]), _esc(a["check"]), _esc(a["observed"]), _esc(a["allowed"]),
             '<span class="fail">blocking</span>' if a["blocking"] else '<span class="warn">warning</span>']
            for a in anomalies]
    return "".join(parts) + _table(["column", "check", "observed", "allowed", "severity"], rows)


def _drift_section(validation: dict[str, Any] | None) -> str:
    drift = (validation or {}).get("drift") or []
    if not drift:
        return _note("No drift measured: there is no production version with a data schema to compare with."
                     if validation is not None else "No validation report.")
    ordered = sorted(drift, key=lambda d: d["value"] / d["threshold"], reverse=True)
    figure = _bars([f"{d['column']} ({'JS' if d['measure'] == 'jensen_shannon' else 'L∞'})" for d in ordered],
                   [d["value"] / d["threshold"] for d in ordered], "Drift / threshold per feature",
                   "distance as a multiple of its threshold (>1 = drifted)",
                   colors=["#b3261e" if d["drifted"] else "#1f5fa8" for d in ordered], limit=1.0)
    rows = [[_esc(d["column"]), _esc(d["measure"].replace("_", "-")), _num(d["value"]), _num(d["threshold"]),
             _verdict(not d["drifted"], "ok", "drifted")] for d in ordered]
    return (f'<div class="plots">{_img(figure, "drift per feature")}</div>'
            + _table(["feature", "measure", "distance", "threshold", "status"], rows))


def _performance_section(evaluation: dict[str, Any] | None) -> str:
    if evaluation is None:
        return _note("No evaluation: the run stopped before the evaluate step.")
    candidate, champion = evaluation["candidate"], evaluation.get("champion") or {}
    champion_label = f"champion v{champion['version']}" if champion.get("version") is not None else "champion"
    rows = [[_esc(name), _num(candidate["metrics"].get(name)), _num((champion.get("metrics") or {}).get(name))]
            for name in METRIC_ORDER if name in candidate["metrics"]]
    parts = [f"<p>Candidate {_esc(candidate.get('candidate_id'))} ({_esc(candidate.get('family'))}) on "
             f"{_esc(candidate.get('rows'))} test rows.</p>", _table(["metric", "candidate", champion_label], rows)]
    if champion.get("error"):
        parts.append(f'<p class="fail">{_esc(champion_label)} not comparable: {_esc(champion["error"])}</p>')
    if candidate.get("task") == "multiclass":
        return "".join(parts) + _multiclass_performance(candidate)
    plots = []
    if candidate.get("roc"):
        plots.append(_img(_curve(candidate["roc"]["fpr"], candidate["roc"]["tpr"], "ROC curve",
                                 "false positive rate", "true positive rate", True), "ROC curve"))
    if candidate.get("pr"):
        plots.append(_img(_curve(candidate["pr"]["recall"], candidate["pr"]["precision"], "Precision-recall curve",
                                 "recall", "precision", False), "precision-recall curve"))
    if candidate.get("calibration"):
        plots.append(_img(_curve(candidate["calibration"]["predicted"], candidate["calibration"]["observed"],
                                 "Calibration curve", "mean predicted probability", "observed positive rate", True),
                          "calibration curve"))
    if candidate.get("confusion_matrix"):
        plots.append(_img(_confusion(candidate["confusion_matrix"]), "confusion matrix"))
    parts.append(f'<div class="plots">{"".join(plots)}</div>')
    return "".join(parts)


def _multiclass_performance(candidate: dict[str, Any]) -> str:
    classes = [str(c) for c in candidate.get("classes", [])]
    parts = [f"<p>{len(classes)} classes, in the model's order: {_esc(', '.join(classes))}.</p>"]
    rows = [[_esc(r["class"]), _num(r["precision"]), _num(r["recall"]), _num(r["f1"]), _esc(r["support"]),
             _num(r.get("roc_auc_ovr"))] for r in candidate.get("per_class", [])]
    parts.append("<h3>Per class</h3>" + _table(["class", "precision", "recall", "F1", "support",
                                                  "ROC AUC (one-vs-rest)"], rows))
    plots = []
    if candidate.get("confusion_matrix"):
        plots.append(_img(_confusion(candidate["confusion_matrix"], classes), "confusion matrix"))
    if candidate.get("pr_per_class"):
        plots.append(_img(_pr_per_class(candidate["pr_per_class"]), "precision-recall per class"))
    parts.append(f'<div class="plots">{"".join(plots)}</div>')
    if candidate.get("confusion_matrix"):
        matrix = candidate["confusion_matrix"]
        parts.append("<h3>Confusion matrix</h3>" + _table(
            ["actual \\ predicted", *classes],
            [[_esc(c), *(_esc(v) for v in row)] for c, row in zip(classes, matrix, strict=True)]))
    return "".join(parts)


def _importance_section(evaluation: dict[str, Any] | None) -> str:
    importance = ((evaluation or {}).get("candidate") or {}).get("importance")
    if not importance:
        return _note("No feature importance: the run stopped before the evaluate step.")
    measure = ("macro one-vs-rest ROC AUC" if (evaluation or {}).get("candidate", {}).get("task") == "multiclass"
               else "ROC AUC")
    figure = _bars([i["feature"] for i in importance], [i["importance"] for i in importance],
                   "Permutation importance (top features)", f"drop in test {measure} when shuffled")
    rows = [[_esc(i["feature"]), _num(i["importance"]), _num(i["std"])] for i in importance]
    return f'<div class="plots">{_img(figure, "feature importance")}</div>' + \
        _table(["feature", f"mean drop in {measure}", "std"], rows)


def _fairness_section(evaluation: dict[str, Any] | None) -> str:
    if evaluation is None:
        return _note("No evaluation: the run stopped before the evaluate step.")
    fairness = evaluation["candidate"].get("fairness")
    skipped = evaluation["candidate"].get("fairness_skipped")
    if not fairness:
        if skipped:
            return f'<p class="warn">Skipped: {_esc(skipped)}.</p>'
        return _note("No sensitive attributes configured (fairness.sensitive_attributes).")
    parts = [f'<p class="warn">Skipped: {_esc(skipped)}.</p>'] if skipped else []
    for attribute, record in fairness.items():
        parts.append(f"<h3>{_esc(attribute)}</h3><p>disparate impact {_num(record.get('disparate_impact'))}; "
                     f"equal-opportunity difference {_num(record.get('equal_opportunity_difference'))} "
                     f"(groups with fewer than {_esc(record.get('min_group_size'))} test rows are not bounded; a TPR needs "
                     f"{_esc(record.get('min_group_positives', 1))} positives, or it is shown as -)</p>")
        parts.append(f'<div class="plots">{_img(_group_rates(attribute, record["groups"]), f"fairness {attribute}")}</div>')
        rows = [[_esc(g["group"]), _esc(g["count"]), _esc(g["positives"]), _num(g["selection_rate"]), _num(g["tpr"]),
                 _num(g["fpr"]), _num(g.get("selection_ratio_to_highest")), "yes" if g["bounded"] else "no"]
                for g in record["groups"]]
        parts.append(_table(["group", "rows", "positives", "selection rate", "TPR", "FPR",
                             "selection rate / highest", "bounded"], rows))
    return "".join(parts)


def _gate_section(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return _note("The gate did not run.")
    rows = [[_esc(r["name"]), _num(r.get("observed")), _esc(r["allowed"]), _verdict(r["passed"]), _esc(r["detail"])]
            for r in decision.get("rules", [])]
    return f"<p>Verdict: {_verdict(decision['passed'], 'PASSED', 'BLOCKED')}</p>" + \
        _table(["rule", "observed", "allowed", "result", "detail"], rows)


def render_report(inputs: ReportInputs) -> str:
    """The whole report as one HTML document (no external files, scripts or fonts)."""
    bodies = {
        "summary": _summary_section(inputs),
        "validation": _validation_section(inputs.validation),
        "drift": _drift_section(inputs.validation),
        "performance": _performance_section(inputs.evaluation),
        "importance": _importance_section(inputs.evaluation),
        "fairness": _fairness_section(inputs.evaluation),
        "gate": _gate_section(inputs.decision),
    }
    sections = "".join(f'<section id="{key}"><h2>{title}</h2>{bodies[key]}</section>' for key, title in SECTIONS)
    title = f"Tollgate report: {inputs.model_name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{_esc(title)}</h1>{sections}</body></html>")


def text_summary(inputs: ReportInputs) -> list[str]:
    """A few plain lines for the terminal: validation, drift, metrics, fairness, gate."""
    lines = [f"run failed: {inputs.failure}"] if inputs.failure else []
    validation = inputs.validation
    if validation is not None:
        anomalies = validation.get("anomalies", [])
        blocking = [a for a in anomalies if a["blocking"]]
        lines.append(f"validation: {'passed' if validation.get('passed') else 'FAILED'} "
                     f"({len(blocking)} blocking, {len(anomalies) - len(blocking)} warnings)"
                     + (f"; {validation['note']}" if validation.get("note") else ""))
        lines.extend(f"  {'blocking' if a['blocking'] else 'warning'}: {a['column']}: {a['check']} "
                     f"(observed {a['observed']}; allowed {a['allowed']})" for a in anomalies)
        drifted = [d["column"] for d in validation.get("drift", []) if d["drifted"]]
        if validation.get("drift"):
            lines.append(f"drift: {len(drifted)} of {len(validation['drift'])} features drifted"
                         + (f" ({', '.join(drifted)})" if drifted else ""))
    if inputs.evaluation is not None:
        candidate = inputs.evaluation["candidate"]
        metrics = candidate["metrics"]
        champion = inputs.evaluation.get("champion") or {}
        if candidate.get("task") == "multiclass":
            against = (f"; champion v{champion['version']} roc_auc_ovr_macro "
                       f"{champion['metrics']['roc_auc_ovr_macro']:.4f}" if champion.get("metrics") else "")
            lines.append(f"candidate {candidate.get('candidate_id')} ({len(candidate.get('classes', []))} classes): "
                         f"roc_auc_ovr_macro {metrics['roc_auc_ovr_macro']:.4f}, f1_macro {metrics['f1_macro']:.4f}, "
                         f"accuracy {metrics['accuracy']:.4f}{against}")
            if candidate.get("fairness_skipped"):
                lines.append(f"fairness skipped: {candidate['fairness_skipped']}")
        else:
            against = (f"; champion v{champion['version']} roc_auc {champion['metrics']['roc_auc']:.4f}"
                       if champion.get("metrics") else "")
            lines.append(f"candidate {candidate.get('candidate_id')}: roc_auc {metrics['roc_auc']:.4f}, "
                         f"pr_auc {metrics['pr_auc']:.4f}{against}")
        for attribute, record in (candidate.get("fairness") or {}).items():
            lines.append(f"fairness {attribute}: disparate impact {_num(record.get('disparate_impact'))}, "
                         f"equal-opportunity difference {_num(record.get('equal_opportunity_difference'))}")
    if inputs.decision is not None:
        lines.append(f"gate: {'PASSED' if inputs.decision['passed'] else 'BLOCKED'}")
        lines.extend(f"  {'pass' if r['passed'] else 'FAIL'}: {r['detail']}" for r in inputs.decision.get("rules", []))
    if inputs.registered_version is not None:
        lines.append(f"registered: v{inputs.registered_version}")
    return lines


def run_report(model_name: str, run_id: str, data: dict[str, Any], validation: ValidationReport,
               evaluation: Evaluation, decision: Decision) -> str:
    """The report as the DAG renders it, from the run's typed records."""
    return render_report(ReportInputs(model_name=model_name, run_id=run_id, data=data,
                                      validation=validation.to_dict(), evaluation=evaluation.to_dict(),
                                      decision=decision.to_dict()))
