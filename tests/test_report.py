"""The HTML report: every section, every plot as an embedded PNG, tables of anomalies and gate
rules; also for a run that stopped at validation. Built from real step outputs."""

import base64
import html
from html.parser import HTMLParser

import pytest

from tests.conftest import evaluation_record
from tollgate.config import FairnessConfig
from tollgate.data.builtin import generate_applicants
from tollgate.records import (
    AttributeFairness,
    ChampionEvaluation,
    DataLineage,
    Decision,
    Evaluation,
    ValidationReport,
)
from tollgate.serving.runtime import OnnxModel
from tollgate.steps.candidates import CandidateSpec
from tollgate.steps.evaluate import evaluate_model
from tollgate.steps.gate import Policy, decide
from tollgate.steps.preprocess import build_feature_spec, split_dataset
from tollgate.steps.report import SECTIONS, ReportInputs, render_report, text_summary
from tollgate.steps.train import train_candidate
from tollgate.steps.validate import infer_data_schema, validate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ReportParser(HTMLParser):
    """Collects section ids, image sources/alts, table headers, the text of each section and the
    rows of each section's tables (the text of each cell)."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.headers, self.text = [], [], [], {}
        self.rows: dict[str, list[list[str]]] = {}
        self._section, self._in_th, self._cell = None, False, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs["id"]
            self.sections.append(self._section)
            self.text[self._section] = ""
            self.rows[self._section] = []
        elif tag == "img":
            self.images.append((self._section, attrs["src"], attrs.get("alt")))
        elif tag == "th":
            self._in_th = True
        elif tag == "tr" and self._section:
            self.rows[self._section].append([])
        elif tag == "td" and self._section:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False
        elif tag == "td" and self._cell is not None:
            self.rows[self._section][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._in_th:
            self.headers.append(data)
        if self._cell is not None:
            self._cell += data
        if self._section:
            self.text[self._section] += data


def parse(document):
    parser = ReportParser()
    parser.feed(document)
    return parser


@pytest.fixture(scope="module")
def inputs():
    """Validation with drift, evaluation with fairness and a gate decision, from the real steps."""
    reference = infer_data_schema(generate_applicants(rows=1000, seed=7), "defaulted", 1,
                                  ["applicant_id", "application_date"])
    frame = generate_applicants(rows=1000, seed=8, drift=1.0)
    validation = validate(frame, reference, target="defaulted", positive_label=1, min_rows=200, reference_version=1,
                          ignored=["applicant_id", "application_date"])
    spec = build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date")
    splits = split_dataset(frame, spec, 0.3, 0.2, 42, extra_columns=["gender", "age"])
    trained = train_candidate(splits.train, splits.validation,
                              CandidateSpec("logreg", "logistic_regression", {"max_iter": 300}), spec)
    model = OnnxModel(trained.onnx, spec.schema)  # evaluate scores the graph, as in the pipeline
    fairness = FairnessConfig(sensitive_attributes=[{"column": "gender"}, {"column": "age", "bins": [30, 50]}],
                              min_group_size=20)
    candidate = {"candidate_id": "logreg", "family": "logistic_regression",
                 **evaluate_model(model, splits.test, spec.columns, fairness=fairness, threshold=0.3)}
    champion_metrics = {**candidate["metrics"], "roc_auc": candidate["metrics"]["roc_auc"] + 0.05}
    policy = Policy(absolute={"roc_auc": {"min": 0.6}}, max_degradation={"roc_auc": 0.005},
                    fairness={"min_disparate_impact": 0.5, "max_equal_opportunity_difference": 0.5})
    decision = decide(candidate["metrics"], ChampionEvaluation(1, champion_metrics), policy,
                      fairness={k: AttributeFairness.from_dict(v) for k, v in candidate["fairness"].items()})
    return ReportInputs(model_name="credit-default", run_id="run-1",
                        data=DataLineage(source="builtin", rows=len(frame)),
                        validation=validation,
                        evaluation=evaluation_record(candidate, {"version": 1, "metrics": champion_metrics}),
                        decision=decision)


def test_report_has_every_section_and_every_plot_as_an_embedded_png(inputs):
    document = render_report(inputs)
    parsed = parse(document)
    assert parsed.sections == [key for key, _ in SECTIONS]
    alts = [alt for _, _, alt in parsed.images]
    assert alts == ["drift per feature", "ROC curve", "precision-recall curve", "calibration curve",
                    "confusion matrix", "feature importance", "fairness gender", "fairness age"]
    for _, source, _ in parsed.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert "http://" not in document and "https://" not in document and "<script" not in document
    # tables: anomalies (with severity), drift, metrics, importance, per-group fairness, gate rules
    for header in ("check", "observed", "allowed", "severity", "measure", "threshold", "selection rate", "TPR",
                   "FPR", "rule", "result"):
        assert header in parsed.headers
    assert "channel" in parsed.text["validation"] and "unseen_categories" in parsed.text["validation"]
    # One drift row per measured feature: its status is "drifted" exactly for the drifted columns.
    drift_rows = [row for row in parsed.rows["drift"] if row]
    drifted = set(inputs.validation.drifted_columns)
    assert drifted and len(drift_rows) == len(inputs.validation.drift)
    assert {row[0] for row in drift_rows if row[-1] == "drifted"} == drifted
    assert {row[-1] for row in drift_rows if row[0] not in drifted} == {"ok"}
    gate = parsed.text["gate"]
    assert "Verdict: BLOCKED" in gate
    # One row per rule the gate checked, with its own result; the only failure is the change rule.
    results = {row[0]: row[3] for row in parsed.rows["gate"] if row}
    assert results == {rule.name: "pass" if rule.passed else "fail" for rule in inputs.decision.rules}
    assert [name for name, result in results.items() if result == "fail"] == ["roc_auc vs champion"]
    assert "gender disparate impact" in gate and "age equal-opportunity difference" in gate


def test_text_summary_names_drift_fairness_and_failed_rules(inputs):
    lines = text_summary(inputs)
    assert any(line.startswith("validation: passed") for line in lines)
    assert any(line.startswith("drift: ") and "channel" in line for line in lines)
    assert any(line.startswith("fairness gender: disparate impact") for line in lines)
    assert "gate: BLOCKED" in lines
    assert any(line.startswith("  FAIL: roc_auc") for line in lines)


def test_a_run_stopped_by_validation_still_renders_with_notes(inputs):
    stopped = ReportInputs(model_name="credit-default", validation=ValidationReport.from_dict({
        "passed": False, "reference_version": 1, "rows": 10, "note": "", "drift": [],
        "anomalies": [{"column": "(table)", "check": "too_few_rows", "observed": "10 rows",
                       "allowed": ">= 200 rows", "blocking": True}]}))
    parsed = parse(render_report(stopped))
    assert parsed.sections == [key for key, _ in SECTIONS] and parsed.images == []
    assert "too_few_rows" in parsed.text["validation"] and "blocking" in parsed.text["validation"]
    assert "not reached" in parsed.text["summary"]
    assert "stopped before the evaluate step" in parsed.text["performance"]


# Markup, template syntax, entities, both quotes, and a '$' that matplotlib would take for mathtext.
HOSTILE = """<script>alert("x")</script> {{ 7*7 }} {% if 1 %}if{% endif %} &amp; & 'q' "dq" $\\frac{a$"""
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "section", "p", "b", "span", "ul",
                "li", "table", "thead", "tbody", "tr", "th", "td", "div", "img"}


def _renamed(value, names):
    """``value`` with every string in ``names`` (as a dict key or a value) replaced by its hostile twin."""
    if isinstance(value, dict):
        return {names.get(k, k) if isinstance(k, str) else k: _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


class TagCollector(ReportParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        super().handle_starttag(tag, attrs)


def test_hostile_strings_are_shown_escaped_and_literal(inputs):
    """Column names, group names, candidate ids, reasons, rule details and the model name come from
    users' data and config: each reaches the page as text, never as markup or template code."""
    names = {"channel": f"channel {HOSTILE}", "credit_score": f"credit_score {HOSTILE}",
             "female": f"female {HOSTILE}", "gender": f"gender {HOSTILE}", "logreg": f"logreg[{HOSTILE}]",
             "logistic_regression": f"family {HOSTILE}"}
    evaluation = _renamed(inputs.evaluation.to_dict(), names)
    evaluation["champion"]["error"] = f"champion error {HOSTILE}"
    decision = _renamed(inputs.decision.to_dict(), names)
    decision["reasons"].append(f"reason {HOSTILE}")
    decision["rules"][0]["detail"] = f"detail {HOSTILE}"
    hostile = ReportInputs(model_name=f"model {HOSTILE}", run_id=f"run {HOSTILE}",
                           data={"source": f"data/{HOSTILE}.csv", "rows": 1000, "window": None},
                           validation=ValidationReport.from_dict(_renamed(inputs.validation.to_dict(), names)),
                           evaluation=Evaluation.from_dict(evaluation), decision=Decision.from_dict(decision),
                           notes=[f"note {HOSTILE}"], failure=f"failure {HOSTILE}")
    document = render_report(hostile)
    assert "<script" not in document
    assert "&lt;script&gt;" in document and "&amp;amp;" in document  # the text '&amp;' itself, escaped
    parsed = TagCollector()
    parsed.feed(document)
    assert set(parsed.tags) <= ALLOWED_TAGS  # nothing injected
    assert parsed.sections == [key for key, _ in SECTIONS]
    # Read back, the text is exactly what was given, in every section that shows it.
    summary = parsed.text["summary"]
    for text in (f"model {HOSTILE}", f"run {HOSTILE}", f"data/{HOSTILE}.csv", f"note {HOSTILE}", f"failure {HOSTILE}",
                 f"reason {HOSTILE}"):
        assert text in summary, text
    assert html.unescape(document).count(f"Tollgate report: model {HOSTILE}") == 2  # <title> and <h1>
    assert f"channel {HOSTILE}" in parsed.text["validation"] and f"channel {HOSTILE}" in parsed.text["drift"]
    performance = parsed.text["performance"]
    assert f"logreg[{HOSTILE}]" in performance and f"family {HOSTILE}" in performance
    assert f"champion error {HOSTILE}" in performance
    assert f"credit_score {HOSTILE}" in parsed.text["importance"]
    assert f"gender {HOSTILE}" in parsed.text["fairness"] and f"female {HOSTILE}" in parsed.text["fairness"]
    assert f"detail {HOSTILE}" in parsed.text["gate"]
    # Attribute values stay inside their quotes: every plot is there, its alt text literal.
    alts = [alt for _, _, alt in parsed.images]
    assert f"fairness gender {HOSTILE}" in alts and len(alts) == 8
    for _, source, _ in parsed.images:
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_SIGNATURE)


def test_the_report_module_imports_no_pyplot_sets_no_backend_and_renders_nothing():
    """Importing it (as `tollgate run` does for the text summary) loads neither matplotlib nor Jinja2;
    drawing a page uses matplotlib's Figure alone: no pyplot, no backend switch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import tollgate.steps.report as report\n"
        "heavy = sorted(m for m in ('matplotlib', 'jinja2') if m in sys.modules)\n"
        "assert not heavy, f'imported at import time: {heavy}'\n"
        "assert report._environment.cache_info().currsize == 0, 'templates loaded at import'\n"
        "import matplotlib\n"
        "calls = []\n"
        "matplotlib.use = lambda *args, **kwargs: calls.append(args)\n"
        "page = report.render_report(report.ReportInputs(model_name='m'))\n"
        "assert 'matplotlib.pyplot' not in sys.modules and calls == []\n"
        "print(page.count('<section'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(SECTIONS))


def test_the_confusion_matrix_title_names_the_recorded_decision_threshold(inputs, monkeypatch):
    from tollgate.steps import report

    titles = []
    original = report._confusion

    def spy(matrix, labels=None, threshold=0.5):
        figure = original(matrix, labels, threshold)
        titles.append(figure.axes[0].get_title())
        return figure

    monkeypatch.setattr(report, "_confusion", spy)
    assert inputs.evaluation.candidate.decision_threshold == 0.3  # evaluated at 0.3 (the fixture)
    render_report(inputs)
    stored = inputs.evaluation.to_dict()
    older = {k: v for k, v in stored["candidate"].items() if k != "decision_threshold"}
    render_report(ReportInputs(model_name="m", evaluation=Evaluation.from_dict({**stored, "candidate": older})))
    # A record from before the threshold was configurable was decided at 0.5.
    assert titles == ["Confusion matrix (threshold 0.3)", "Confusion matrix (threshold 0.5)"]


def test_the_monitor_page_shows_what_the_log_holds_as_text():
    """`tollgate monitor --html` renders from the same templates: category values and column names
    seen in live traffic are text, including one that looks like markup, a template or mathtext."""
    import numpy as np
    import pandas as pd

    from tollgate.steps.drift import categorical_drift, numeric_drift, numeric_profile
    from tollgate.steps.monitor import PREDICTION, MonitorReport, render_html

    rng = np.random.default_rng(0)
    column = f"plan {HOSTILE}"
    live = pd.Series(rng.choice(["basic", HOSTILE], size=400))
    probabilities = pd.Series(rng.uniform(size=400))
    report = MonitorReport(model_name="credit-default", production_version=3, since=None, until=None, rows=400,
                           requests=40, notes=[f"note {HOSTILE}"])
    report.drift.append(categorical_drift(column, {"basic": 1.0}, live, 0.1))
    report.prediction_drift = numeric_drift(PREDICTION, numeric_profile(pd.Series(rng.uniform(size=400)), 10),
                                            probabilities, 0.05)
    report.unseen_categories.append({"column": column, "rate": 0.5, "examples": [HOSTILE]})
    page = render_html(report)
    assert "<script" not in page
    parsed = TagCollector()
    parsed.feed(page)
    assert set(parsed.tags) <= ALLOWED_TAGS
    assert parsed.sections == ["summary", "traffic", "drift", "prediction", "quality"]
    assert f"Drift: {column}: l-infinity 0.5" in parsed.text["summary"] and f"note {HOSTILE}" in parsed.text["summary"]
    assert column in parsed.text["drift"] and HOSTILE in parsed.text["quality"]
    assert [alt for _, _, alt in parsed.images] == ["drift per feature", "reference", "live"]
